/**
 * `--batch-size auto`: the memory one image's forward pass can take, read off the graph's inferred
 * shapes, and the largest power-of-two batch that fits a share of the GPU's free memory.
 */
import { describe, expect, it } from 'vitest';
import { AUTO_BATCH, autoBatchSize, modelMemory, weightsStillToLoad } from '../../../src/worker/engine/batch-size.js';
import { sessionsAtOnce } from '../../../src/worker/engine/onnx/session-pool.js';
import type { ModelGraph } from '../../../src/worker/model/graph/ir.js';

const zeros = (dims: number[]) => ({ dtype: 'float32' as const, dims, data: new Float32Array(dims.reduce((a, d) => a * d, 1)) });

/** conv 3->4 (3x3, same) -> relu -> global average pool -> flatten -> dense 4->2, on 8x8 RGB. */
const tiny: ModelGraph = {
  name: 'tiny',
  inputShape: [8, 8, 3],
  input: { name: 'x', layout: 'nchw' },
  output: 'y',
  nodes: [
    { name: 'conv', op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, strides: { ints: [1, 1] } } },
    { name: 'relu', op: 'Relu', inputs: ['c'], outputs: ['r'], attrs: {} },
    { name: 'gap', op: 'GlobalAveragePool', inputs: ['r'], outputs: ['g'], attrs: {} },
    { name: 'flat', op: 'Flatten', inputs: ['g'], outputs: ['f'], attrs: { axis: { int: 1 } } },
    { name: 'fc', op: 'Gemm', inputs: ['f', 'wf', 'bf'], outputs: ['y'], attrs: { transB: { int: 1 } } },
  ],
  constants: { w: zeros([4, 3, 3, 3]), b: zeros([4]), wf: zeros([2, 4]), bf: zeros([2]) },
  weightsHash: '',
  source: 'test',
  producer: 'test',
};

describe('batch size auto', () => {
  it('counts every activation of one image and the weights, in float32 bytes', () => {
    // input 3x8x8 = 192, conv 4x8x8 = 256, relu 256, pool 4, flatten 4, dense 2
    expect(modelMemory(tiny)).toEqual({ activationBytesPerImage: (192 + 256 + 256 + 4 + 4 + 2) * 4, weightsBytes: (108 + 4 + 8 + 2) * 4 });
  });

  it('takes the largest power of two that fits the headroom share of free memory', () => {
    const MiB = 2 ** 20;
    // VGG16-sized: 61 MiB of activations per image, 528 MiB of weights, one session (loaded).
    const vgg = { activationBytesPerImage: 61 * MiB, weightsBytes: 528 * MiB, sessions: 1 };
    // 8 GiB free: 8192 x 0.6 = 4915 MiB -> 80 images fit -> 64.
    expect(autoBatchSize({ freeBytes: 8192 * MiB, ...vgg })).toMatchObject({ batchSize: 64, reason: expect.stringMatching(/80 fit, batch 64$/) });
    // 80 GiB free: hundreds fit, capped.
    expect(autoBatchSize({ freeBytes: 80 * 1024 * MiB, ...vgg })).toMatchObject({ batchSize: AUTO_BATCH.max, reason: expect.stringMatching(/capped at 128/) });
    // 1 GiB free: 614 MiB -> 10 images -> 8.
    expect(autoBatchSize({ freeBytes: 1024 * MiB, ...vgg }).batchSize).toBe(8);
    expect(autoBatchSize({ freeBytes: 64 * MiB, ...vgg })).toMatchObject({ batchSize: 1, reason: expect.stringMatching(/barely fits/) });
  });

  it('counts the weights copy and the activation arena of every session the engine may hold at once', () => {
    const MiB = 2 ** 20;
    const w = 528 * MiB;
    // One copy is loaded when free memory is read; each further session adds one.
    expect(weightsStillToLoad(w, 1)).toBe(0);
    expect(weightsStillToLoad(w, 2)).toBe(w);
    expect(weightsStillToLoad(w, 5)).toBe(4 * w);
    // The ONNX engine's sessions at once: one per gradient method served, up to the cap; a
    // forward-only graph (no gradient method) is one session.
    expect(sessionsAtOnce(2, 5)).toBe(2);
    expect(sessionsAtOnce(5, 5)).toBe(5);
    expect(sessionsAtOnce(8, 3)).toBe(3);
    expect(sessionsAtOnce(1, 5)).toBe(1);
    expect(sessionsAtOnce(2, 0)).toBe(1);
    // 8 GiB free, VGG16 (61 MiB of activations per image). Every session keeps its own arena, so
    // each image of the batch counts once per session.
    const vgg = { freeBytes: 8192 * MiB, activationBytesPerImage: 61 * MiB, weightsBytes: w };
    // One session (TF.js, or a cap of 1): 4915 MiB / 61 -> 80 fit -> 64.
    expect(autoBatchSize({ ...vgg, sessions: 1 }).batchSize).toBe(64);
    // The default cap of 2: 4915 - 528 = 4387 MiB / (2 x 61) -> 35 fit -> 32.
    expect(autoBatchSize({ ...vgg, sessions: 2 })).toMatchObject({ batchSize: 32, reason: expect.stringMatching(/- 528 MiB weights \(1 more session\(s\)\) = 4387 MiB .* in each of 2 session\(s\): 35 fit, batch 32$/) });
    // A cap of 5 with every method: 4915 - 2112 = 2803 MiB / (5 x 61) -> 9 fit -> 8.
    expect(autoBatchSize({ ...vgg, sessions: 5 })).toMatchObject({ batchSize: 8, reason: expect.stringMatching(/- 2112 MiB weights .* 9 fit, batch 8$/) });
  });

  it('uses the CPU default where there is no GPU memory to size for', () => {
    expect(autoBatchSize({ freeBytes: null, activationBytesPerImage: 1, weightsBytes: 1, sessions: 2 })).toMatchObject({ batchSize: AUTO_BATCH.cpu });
  });
});
