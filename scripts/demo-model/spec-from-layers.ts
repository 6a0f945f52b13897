/**
 * Turn the demo `tf.LayersModel` into the project's engine-neutral `ModelSpec`, reading layer
 * configs and weights from the loaded model. Only the layer types the demo network uses are mapped.
 */
import type * as tf from '@tensorflow/tfjs';
import { ModelError } from '../../src/shared/errors.js';
import { buildModelSpec, type Architecture, type LayerConfig, type LayerWeights } from '../../src/worker/model/architecture.js';
import type { Activation, ModelSpec } from '../../src/worker/model/spec.js';

/** `getConfig()` of TF.js layers (camelCase keys). */
interface LayerConfigJson {
  filters?: number;
  units?: number;
  kernelSize?: number[];
  strides?: number[];
  poolSize?: number[];
  padding?: 'same' | 'valid';
  activation?: Activation;
  useBias?: boolean;
}

function pair(v: number[] | undefined, name: string): [number, number] {
  if (v === undefined || v.length !== 2) throw new ModelError(`layer ${name}: expected a 2-element size, got ${JSON.stringify(v)}`);
  return [v[0] as number, v[1] as number];
}

export async function specFromLayersModel(model: tf.LayersModel, source: string): Promise<ModelSpec> {
  const layers: LayerConfig[] = [];
  const weights = new Map<string, LayerWeights>();
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const c = layer.getConfig() as LayerConfigJson;
    const name = layer.name;
    switch (cls) {
      case 'Conv2D':
        layers.push({ type: 'conv2d', name, filters: c.filters as number, kernelSize: pair(c.kernelSize, name), strides: pair(c.strides, name), padding: c.padding ?? 'valid', activation: c.activation ?? 'linear', useBias: c.useBias ?? true });
        break;
      case 'MaxPooling2D':
        layers.push({ type: 'maxpool2d', name, poolSize: pair(c.poolSize, name), strides: pair(c.strides ?? c.poolSize, name), padding: c.padding ?? 'valid' });
        break;
      case 'GlobalAveragePooling2D':
        layers.push({ type: 'gap', name });
        break;
      case 'Dense':
        layers.push({ type: 'dense', name, units: c.units as number, activation: c.activation ?? 'linear', useBias: c.useBias ?? true });
        break;
      default:
        throw new ModelError(`layer ${name}: ${cls} is not used by the demo model`);
    }
    const values = layer.getWeights();
    if (values.length > 0) {
      weights.set(name, { arrays: await Promise.all(values.map(async (t) => Float32Array.from(await t.data()))), shapes: values.map((t) => t.shape) });
    }
  }
  const input = model.inputs[0]?.shape;
  if (input === undefined || input.length !== 4) throw new ModelError('demo model input must be [batch, h, w, c]');
  const arch: Architecture = { name: model.name, inputShape: [input[1] as number, input[2] as number, input[3] as number], layers };
  return buildModelSpec(arch, weights, { source });
}
