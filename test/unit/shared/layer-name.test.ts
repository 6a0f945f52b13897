/**
 * `--layer` takes the names exporters write: Keras layer names, ONNX node and tensor names
 * (PyTorch's `/layer4/Relu_2_output_0`, `onnx::Conv_245`, tf2onnx's `;`-joined `...:0` names).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/shared/errors.js';
import { parseExplainOptionFlags } from '../../../src/shared/explain-options.js';
import { parseLayerName, parseModelOptionFlags } from '../../../src/shared/model-options.js';
import { importOnnx } from '../../../src/worker/model/graph/onnx-import.js';
import { resolveTarget } from '../../../src/worker/model/graph/walker.js';

const TF2ONNX = 'StatefulPartitionedCall/resnet50/conv5_block3_out/Relu;StatefulPartitionedCall/resnet50/conv5_block3_add/add:0';

describe('--layer names', () => {
  it.each(['block5_conv3', '/layer4/Relu_2_output_0', 'conv:0', 'onnx::Conv_245', 'input.1', TF2ONNX])('accepts %s on every command', (name) => {
    expect(parseLayerName(name)).toBe(name);
    expect(parseModelOptionFlags({ layer: name }).layer).toBe(name);
    expect(parseExplainOptionFlags({ layer: name }).layer).toBe(name);
  });

  it.each(['', 'block5 conv3', 'a\tb', 'a\nb', 'x'.repeat(2049)])('refuses %j naming the flag', (name) => {
    const err = (() => {
      try {
        parseLayerName(name);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(/^--layer: expected a layer, node or tensor name without spaces/);
  });

  it('a tensor name reaches the walker intact and selects that tensor of an ONNX model', async () => {
    const graph = await importOnnx(readFileSync('test/fixtures/onnx/resnet.onnx'), { source: 'resnet.onnx', name: 'resnet' });
    const name = parseModelOptionFlags({ layer: '/layer1/Relu_1_output_0' }).layer;
    expect(resolveTarget(graph, name)).toBe('/layer1/Relu_1_output_0');
    expect(resolveTarget(graph, '/layer1/Relu_1')).toBe('/layer1/Relu_1_output_0');
  });
});
