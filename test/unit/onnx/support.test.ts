/**
 * Which models the ONNX compiler accepts, and the reasons it gives for the ones it hands to TF.js.
 */
import { describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/shared/errors.js';
import type { CamMethod } from '../../../src/shared/explain-options.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { ONNX_CAM_METHODS, isOnnxSupported } from '../../../src/worker/engine/onnx/support.js';
import type { LayerSpec, ModelSpec } from '../../../src/worker/model/spec.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';

const spec = vggShapedSpec({ seed: 2 });

function withLayers(layers: LayerSpec[]): ModelSpec {
  return { ...spec, layers };
}

const overlapping = withLayers(spec.layers.map((l) => (l.name === 'block2_pool' && l.type === 'maxpool2d' ? { ...l, poolSize: [3, 3], strides: [2, 2], padding: 'same' } : l)));

describe('isOnnxSupported', () => {
  it('accepts VGG-shaped flatten and GAP models for every method', () => {
    for (const method of ONNX_CAM_METHODS) {
      expect(isOnnxSupported(spec, method)).toEqual({ ok: true, layer: 'block2_conv2' });
      expect(isOnnxSupported(vggShapedSpec({ head: 'gap', dropout: 0.3 }), method).ok).toBe(true);
    }
  });

  it('accepts an earlier layer when the head stays differentiable in closed form', () => {
    expect(isOnnxSupported(spec, 'gradcam', 'block2_pool')).toEqual({ ok: true, layer: 'block2_pool' });
  });

  it('rejects conv layers after the target layer, naming the layer', () => {
    const r = isOnnxSupported(spec, 'gradcam', 'block1_conv2');
    expect(r).toEqual({ ok: false, reason: expect.stringMatching(/node "block2_conv1\/Conv" \(Conv\) in the head \(after the target layer\) has no compiled backward/) });
  });

  it('rejects an unknown layer, for gradient and gradient-free methods alike', () => {
    expect(isOnnxSupported(spec, 'gradcam', 'nope')).toMatchObject({ ok: false, reason: expect.stringMatching(/nope/) });
    expect(isOnnxSupported(spec, 'scorecam' as CamMethod, 'nope')).toMatchObject({ ok: false, reason: expect.stringMatching(/nope/) });
  });

  it('accepts gradient-free methods whatever the head (they need no backward rule)', () => {
    expect(isOnnxSupported(spec, 'eigencam', 'block1_conv2')).toEqual({ ok: true, layer: 'block1_conv2' });
    expect(isOnnxSupported(overlapping, 'scorecam')).toEqual({ ok: true, layer: 'block2_conv2' });
  });

  it('accepts a sigmoid (multi-label) output and rejects an overlapping pool in the head', () => {
    const sigmoid = withLayers(spec.layers.map((l) => (l.name === 'predictions' && l.type === 'dense' ? { ...l, activation: 'sigmoid' } : l)));
    expect(isOnnxSupported(sigmoid, 'gradcam')).toEqual({ ok: true, layer: 'block2_conv2' });
    expect(isOnnxSupported(overlapping, 'gradcam')).toMatchObject({ ok: false, reason: expect.stringMatching(/"block2_pool" \(MaxPool\): only square, non-overlapping/) });
  });

  it('createOnnxEngine refuses unsupported models with a ModelError carrying the reason', async () => {
    await expect(createOnnxEngine({ spec: overlapping, cache: null })).rejects.toThrow(ModelError);
    await expect(createOnnxEngine({ spec: overlapping, cache: null })).rejects.toThrow(/non-overlapping/);
  });
});
