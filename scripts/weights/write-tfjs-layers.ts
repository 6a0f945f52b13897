/**
 * Write a ModelSpec as a TF.js Layers model (model.json + binary shards), laid out as
 * `tensorflowjs_converter` writes them: one weight group, weights concatenated in layer order
 * (kernel, bias) and split into shards of at most `shardBytes`, optionally quantised.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { architectureOf } from '../../src/worker/model/architecture.js';
import type { ModelSpec } from '../../src/worker/model/spec.js';
import { kerasModelConfig } from './keras-json.js';

export type TfjsQuantization = 'none' | 'uint8' | 'uint16' | 'float16';

export interface WriteTfjsLayersOptions {
  /** Largest shard in bytes. Default 4 MiB, as the converter. */
  shardBytes?: number;
  /** Weight quantisation. Default none (float32). */
  quantization?: TfjsQuantization;
  /** Wrap the topology in `model_config`, as the converter does for Keras .h5 input. Default false. */
  converterWrapper?: boolean;
}

interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: 'float32';
  quantization?: { dtype: 'uint8' | 'uint16'; scale: number; min: number } | { dtype: 'float16' };
}

export async function writeTfjsLayers(dir: string, spec: ModelSpec, options: WriteTfjsLayersOptions = {}): Promise<string> {
  const quantization = options.quantization ?? 'none';
  const chunks: Uint8Array[] = [];
  const weights: ManifestEntry[] = [];
  for (const layer of spec.layers) {
    if (layer.type !== 'conv2d' && layer.type !== 'dense') continue;
    const kernelShape =
      layer.type === 'dense'
        ? [layer.kernel.length / layer.units, layer.units]
        : [layer.kernelSize[0], layer.kernelSize[1], layer.kernel.length / (layer.kernelSize[0] * layer.kernelSize[1] * layer.filters), layer.filters];
    const list: Array<[string, Float32Array, number[]]> = [[`${layer.name}/kernel`, layer.kernel, kernelShape]];
    if (layer.bias) list.push([`${layer.name}/bias`, layer.bias, [layer.bias.length]]);
    for (const [name, data, shape] of list) {
      const { bytes, entry } = encode(data, quantization);
      chunks.push(bytes);
      weights.push({ name, shape, dtype: 'float32', ...entry });
    }
  }
  const all = Buffer.concat(chunks);
  const shardBytes = options.shardBytes ?? 4 * 1024 * 1024;
  const count = Math.max(1, Math.ceil(all.length / shardBytes));
  const paths = Array.from({ length: count }, (_, i) => `group1-shard${i + 1}of${count}.bin`);
  await mkdir(dir, { recursive: true });
  await Promise.all(paths.map((p, i) => writeFile(join(dir, p), all.subarray(i * shardBytes, (i + 1) * shardBytes))));
  const topology = { ...kerasModelConfig(architectureOf(spec)), keras_version: 'tfjs-layers 4.22.0', backend: 'tensor_flow.js' };
  const modelJson = {
    format: 'layers-model',
    generatedBy: 'gradcam-audit scripts/weights',
    convertedBy: null,
    modelTopology: options.converterWrapper ? { keras_version: '2.12.0', backend: 'tensorflow', model_config: kerasModelConfig(architectureOf(spec)) } : topology,
    weightsManifest: [{ paths, weights }],
  };
  const path = join(dir, 'model.json');
  await writeFile(path, JSON.stringify(modelJson));
  return path;
}

function encode(data: Float32Array, quantization: TfjsQuantization): { bytes: Uint8Array; entry: Pick<ManifestEntry, 'quantization'> } {
  if (quantization === 'none') return { bytes: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)), entry: {} };
  if (quantization === 'float16') {
    const out = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = toHalf(data[i]!);
    return { bytes: new Uint8Array(out.buffer), entry: { quantization: { dtype: 'float16' } } };
  }
  // Affine quantisation as tfjs-converter: q = round((v - min) / scale).
  const levels = quantization === 'uint8' ? 255 : 65535;
  let min = Infinity;
  let max = -Infinity;
  for (const v of data) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const scale = max > min ? (max - min) / levels : 1;
  const out = quantization === 'uint8' ? new Uint8Array(data.length) : new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Math.round((data[i]! - min) / scale);
  return { bytes: new Uint8Array(out.buffer), entry: { quantization: { dtype: quantization, scale, min } } };
}

/** float32 → IEEE half, round to nearest even (normal range; tiny values flush to zero). */
function toHalf(value: number): number {
  const f = new Float32Array([value]);
  const bits = new Uint32Array(f.buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  const mantissa = bits & 0x7fffff;
  if (exponent <= 0) return sign;
  if (exponent >= 31) return sign | 0x7c00;
  let half = sign | (exponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return half;
}
