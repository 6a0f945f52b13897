/**
 * Backend choice for the demo-model scripts. The wasm backend (XNNPACK, SIMD) is several times faster
 * than the pure-JS cpu backend here; tfjs-node cannot be installed offline.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

export type ScriptBackend = 'wasm' | 'cpu';

export async function useBackend(name: ScriptBackend = 'wasm'): Promise<string> {
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`TF.js backend '${name}' failed to initialise`);
  await tf.ready();
  return tf.getBackend();
}
