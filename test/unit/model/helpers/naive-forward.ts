/**
 * A deliberately plain float64 forward pass over a ModelSpec, written from the layout conventions
 * (NHWC, HWIO, (in,out), flatten in (h,w,c)) with no tensor library. Tests use it to check that
 * loaded weights behave and that random initialisation keeps activations at a sane scale.
 */
import type { Activation, LayerSpec, ModelSpec } from '../../../../src/worker/model/spec.js';

export interface Activations {
  /** Layer name → flat NHWC output (batch 1). */
  outputs: Map<string, Float64Array>;
  probabilities: Float64Array;
}

export function naiveForward(spec: ModelSpec, input: Float32Array | Float64Array): Activations {
  let shape: number[] = [...spec.inputShape];
  let x: Float64Array = Float64Array.from(input);
  const outputs = new Map<string, Float64Array>();
  for (const layer of spec.layers) {
    [x, shape] = apply(layer, x, shape);
    outputs.set(layer.name, x);
  }
  return { outputs, probabilities: x };
}

function apply(layer: LayerSpec, x: Float64Array, shape: number[]): [Float64Array, number[]] {
  switch (layer.type) {
    case 'input':
    case 'dropout':
      return [x, shape];
    case 'flatten':
      return [x, [x.length]];
    case 'activation':
      return [activate(x, layer.activation), shape];
    case 'gap': {
      const [h, w, c] = shape as [number, number, number];
      const out = new Float64Array(c);
      for (let i = 0; i < h * w; i++) for (let k = 0; k < c; k++) out[k]! += x[i * c + k]! / (h * w);
      return [out, [c]];
    }
    case 'dense': {
      const n = x.length;
      const out = new Float64Array(layer.units);
      for (let o = 0; o < layer.units; o++) {
        let s = layer.bias ? layer.bias[o]! : 0;
        for (let i = 0; i < n; i++) s += x[i]! * layer.kernel[i * layer.units + o]!;
        out[o] = s;
      }
      return [activate(out, layer.activation), [layer.units]];
    }
    case 'maxpool2d': {
      const [h, w, c] = shape as [number, number, number];
      const [ph, pw] = layer.poolSize;
      const [sh, sw] = layer.strides;
      const oh = Math.floor((h - ph) / sh) + 1;
      const ow = Math.floor((w - pw) / sw) + 1;
      const out = new Float64Array(oh * ow * c).fill(-Infinity);
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++)
          for (let di = 0; di < ph; di++)
            for (let dj = 0; dj < pw; dj++)
              for (let k = 0; k < c; k++) {
                const v = x[((i * sh + di) * w + (j * sw + dj)) * c + k]!;
                const o = (i * ow + j) * c + k;
                if (v > out[o]!) out[o] = v;
              }
      return [out, [oh, ow, c]];
    }
    case 'conv2d': {
      // 'same' padding with stride 1 only: enough for VGG-shaped nets.
      const [h, w, c] = shape as [number, number, number];
      const [kh, kw] = layer.kernelSize;
      const f = layer.filters;
      const out = new Float64Array(h * w * f);
      const top = Math.floor((kh - 1) / 2);
      const left = Math.floor((kw - 1) / 2);
      for (let i = 0; i < h; i++)
        for (let j = 0; j < w; j++)
          for (let o = 0; o < f; o++) {
            let s = layer.bias ? layer.bias[o]! : 0;
            for (let di = 0; di < kh; di++) {
              const y = i + di - top;
              if (y < 0 || y >= h) continue;
              for (let dj = 0; dj < kw; dj++) {
                const xx = j + dj - left;
                if (xx < 0 || xx >= w) continue;
                for (let k = 0; k < c; k++) s += x[(y * w + xx) * c + k]! * layer.kernel[((di * kw + dj) * c + k) * f + o]!;
              }
            }
            out[(i * w + j) * f + o] = s;
          }
      return [activate(out, layer.activation), [h, w, f]];
    }
  }
}

function activate(x: Float64Array, activation: Activation): Float64Array {
  if (activation === 'linear') return x;
  if (activation === 'relu') return x.map((v) => Math.max(0, v));
  if (activation === 'sigmoid') return x.map((v) => 1 / (1 + Math.exp(-v)));
  const max = Math.max(...x);
  const e = x.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}
