/**
 * Model card, flags and format defaults resolved into one setup; identities and their mismatch
 * reasons. Real files in a temporary folder, a real HTTP server for http(s) models, a real
 * PyTorch-exported ONNX file (test/fixtures/model/pytorch-tiny.onnx) and one written with
 * another producer name.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/shared/errors.js';
import { parseModelCard } from '../../../src/shared/model-card.js';
import { modelFiles } from '../../../src/shared/model-files.js';
import { parseModelOptionFlags } from '../../../src/shared/model-options.js';
import { modelIdentityOf, modelMismatch, resolveModelSetup } from '../../../src/shared/model-setup.js';
import { readOnnxProducerName } from '../../../src/shared/onnx-header.js';
import { encodeModel } from '../../../src/worker/model/graph/onnx-proto.js';

const PYTORCH_ONNX = join(import.meta.dirname, '..', '..', 'fixtures', 'model', 'pytorch-tiny.onnx');
const HDF5 = Buffer.concat([Buffer.from('\x89HDF\r\n\x1a\n', 'latin1'), Buffer.alloc(64, 1)]);
const files = modelFiles();

function onnxBy(producerName: string): Uint8Array {
  return encodeModel({ irVersion: 8, opsetImport: [{ domain: '', version: 13 }], producerName, producerVersion: '1.0', graph: { name: 'g', node: [], initializer: [], input: [], output: [] } });
}

describe('model setup', () => {
  let dir: string;
  const at = (...parts: string[]): string => join(dir, ...parts);
  const write = (name: string, content: string | Uint8Array): string => {
    mkdirSync(join(at(name), '..'), { recursive: true });
    writeFileSync(at(name), content);
    return at(name);
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'gca-model-setup-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the ONNX producer name from a real PyTorch export and from any writer', () => {
    expect(readOnnxProducerName(readFileSync(PYTORCH_ONNX))).toBe('pytorch');
    expect(readOnnxProducerName(onnxBy('tf2onnx'))).toBe('tf2onnx');
    expect(readOnnxProducerName(Buffer.from('not an onnx file'))).toBeNull();
    expect(readOnnxProducerName(readFileSync(PYTORCH_ONNX).subarray(0, 6))).toBeNull(); // cut before the name
  });

  it('defaults: caffe for .h5 and TF.js, torch for a PyTorch ONNX file, no crop, no layer', async () => {
    const h5 = await resolveModelSetup(write('plain/vgg.h5', HDF5), {}, files);
    expect(h5).toMatchObject({ format: 'keras-h5', preprocessing: { mode: 'caffe', centerCrop: false }, preprocessFrom: 'default', card: null, labels: null });
    expect(h5.layer).toBeUndefined();
    const tfjs = await resolveModelSetup(write('tfjs/model.json', '{"modelTopology":{},"weightsManifest":[]}'), {}, files);
    expect(tfjs.preprocessing.mode).toBe('caffe');
    copyFileSync(PYTORCH_ONNX, at('plain', 'resnet.onnx'));
    const onnx = await resolveModelSetup(at('plain', 'resnet.onnx'), {}, files);
    expect(onnx).toMatchObject({ format: 'onnx', producer: 'pytorch', preprocessing: { mode: 'torch', centerCrop: false }, preprocessFrom: 'default' });
    // Format by content when the name says nothing.
    copyFileSync(PYTORCH_ONNX, at('plain', 'exported-model'));
    expect((await resolveModelSetup(at('plain', 'exported-model'), {}, files)).preprocessing.mode).toBe('torch');
  });

  it("defaults a Keras .h5 with an architecture to that keras.applications layout's preprocess_input; flags and cards still win", async () => {
    const weights = write('arch/w.h5', HDF5);
    const mode = async (options: Parameters<typeof resolveModelSetup>[1]) => (await resolveModelSetup(weights, options, files)).preprocessing.mode;
    expect(await mode({ architecture: 'vgg16' })).toBe('caffe');
    expect(await mode({ architecture: 'resnet50' })).toBe('caffe');
    expect(await mode({ architecture: 'mobilenetv2' })).toBe('tf');
    expect(await mode({ architecture: 'densenet121' })).toBe('torch');
    expect(await mode({ architecture: 'efficientnetb0' })).toBe('none');
    expect(await mode({ architecture: 'efficientnetb0', preprocess: 'raw' })).toBe('raw');
    write('arch/w.model.json', JSON.stringify({ architecture: 'efficientnetb0' }));
    expect(await resolveModelSetup(weights, {}, files)).toMatchObject({ preprocessing: { mode: 'none' }, preprocessFrom: 'default', architecture: 'efficientnetb0' });
  });

  it('asks for --preprocess when an ONNX file was not exported by PyTorch, or the format is unknown', async () => {
    const tf2onnx = write('ambiguous/mobilenet.onnx', onnxBy('tf2onnx'));
    const err = await resolveModelSetup(tf2onnx, {}, files).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/^--preprocess: .*mobilenet\.onnx is an ONNX file made by "tf2onnx".*pass --preprocess caffe\|tf\|torch\|raw.*mobilenet\.model\.json/);
    expect((await resolveModelSetup(tf2onnx, { preprocess: 'tf' }, files)).preprocessing.mode).toBe('tf');
    const unknown = write('ambiguous/weights.bin', 'garbage');
    await expect(resolveModelSetup(unknown, {}, files)).rejects.toThrow(/--preprocess: cannot tell the format of .*weights\.bin/);
  });

  it('reads the card beside the weights; flags override each field', async () => {
    const weights = write('carded/net.h5', HDF5);
    write('carded/net.model.json', JSON.stringify({ schema: 'gradcam-audit/model-card@1', name: 'net', version: '3', preprocess: 'tf', centerCrop: true, layer: 'block4_conv3', labels: ['cat', 'dog'], inputSize: [299, 299] }));
    const fromCard = await resolveModelSetup(weights, {}, files);
    expect(fromCard).toMatchObject({
      preprocessing: { mode: 'tf', centerCrop: true },
      preprocessFrom: 'model card',
      layer: 'block4_conv3',
      labels: { source: at('carded', 'net.model.json'), text: '["cat","dog"]' },
      inputSize: [299, 299],
      name: 'net',
      version: '3',
    });
    write('carded/other-labels.txt', 'ant\nbee\n');
    const flags = parseModelOptionFlags({ preprocess: 'raw', centerCrop: false, layer: 'block5_conv3', labels: at('carded', 'other-labels.txt') });
    const overridden = await resolveModelSetup(weights, flags, files);
    expect(overridden).toMatchObject({ preprocessing: { mode: 'raw', centerCrop: false }, preprocessFrom: 'flag', layer: 'block5_conv3', labels: { text: 'ant\nbee\n' } });
  });

  it("finds model.json beside an .onnx file, and resolves the card's labels file next to the card", async () => {
    copyFileSync(PYTORCH_ONNX, write('folder/resnet.onnx', ''));
    write('folder/model.json', JSON.stringify({ preprocess: 'caffe', labels: 'classes.txt' }));
    write('folder/classes.txt', 'a\nb\n');
    const setup = await resolveModelSetup(at('folder', 'resnet.onnx'), {}, files);
    expect(setup).toMatchObject({ preprocessing: { mode: 'caffe' }, preprocessFrom: 'model card', labels: { source: at('folder', 'classes.txt'), text: 'a\nb\n' } });
    expect(setup.card?.uri).toBe(at('folder', 'model.json'));
  });

  it('uses labels.json beside a TF.js model.json (explain used to warn instead)', async () => {
    const model = write('tfjs-labelled/model.json', '{"modelTopology":{},"weightsManifest":[]}');
    write('tfjs-labelled/labels.json', '["red", "green"]');
    expect((await resolveModelSetup(model, {}, files)).labels).toEqual({ source: at('tfjs-labelled', 'labels.json'), text: '["red", "green"]' });
  });

  it('refuses a bad card with the file and the field', () => {
    expect(() => parseModelCard('{"preproces": "torch"}', 'x.model.json')).toThrow(/x\.model\.json: unknown field "preproces"/);
    expect(() => parseModelCard('{"preprocess": "pytorch"}', 'x.model.json')).toThrow(/"preprocess".*caffe, tf, torch, raw/);
    expect(() => parseModelCard('{"centerCrop": "yes"}', 'x.model.json')).toThrow(/"centerCrop" must be true or false/);
    expect(() => parseModelCard('{"inputSize": [224]}', 'x.model.json')).toThrow(/"inputSize" must be \[height, width\]/);
    expect(() => parseModelCard('{"schema": "other@2"}', 'x.model.json')).toThrow(/"schema" must be "gradcam-audit\/model-card@1"/);
    expect(() => parseModelCard('[1]', 'x.model.json')).toThrow(/must be a JSON object/);
    expect(() => parseModelCard('{', 'x.model.json')).toThrow(/not valid JSON/);
  });

  it('identity: same setup, same identity; each difference is named', async () => {
    const weights = write('ident/net.h5', HDF5);
    const a = await modelIdentityOf(await resolveModelSetup(weights, {}, files), files);
    expect(a).toEqual({ weights, fingerprint: `sha256:${createHash('sha256').update(HDF5).digest('hex')}`, preprocess: 'caffe', centerCrop: false, layer: null, labels: null, architecture: 'vgg16 224x224' });
    expect(modelMismatch(a, await modelIdentityOf(await resolveModelSetup(weights, {}, files), files))).toBeNull();
    const b = await modelIdentityOf(await resolveModelSetup(weights, { preprocess: 'torch', centerCrop: true }, files), files);
    expect(modelMismatch(a, b)).toMatch(/preprocess "caffe" vs "torch"; centerCrop false vs true \(run vs worker\)/);
    const other = write('ident/other.h5', Buffer.concat([HDF5, Buffer.from([7])]));
    const c = await modelIdentityOf(await resolveModelSetup(other, {}, files), files);
    expect(modelMismatch(a, c)).toMatch(/weights .*net\.h5 \(sha256:[0-9a-f]{64}\) vs .*other\.h5 \(sha256:/);
  });

  it('identity: the Keras layout of an .h5 (flag, then card, with its input size) is part of it; ONNX files have none; runs recorded without it match any', async () => {
    const weights = write('layout/net.h5', HDF5);
    const identity = async (options: Parameters<typeof resolveModelSetup>[1]) => modelIdentityOf(await resolveModelSetup(weights, options, files), files);
    const vgg = await identity({});
    const resnet = await identity({ architecture: 'resnet50' });
    expect(resnet.architecture).toBe('resnet50 224x224');
    expect(modelMismatch(vgg, resnet)).toMatch(/architecture "vgg16 224x224" vs "resnet50 224x224" \(run vs worker\)/);
    write('layout/net.model.json', JSON.stringify({ architecture: 'densenet121', inputSize: [160, 192] }));
    const carded = await identity({});
    expect(carded.architecture).toBe('densenet121 160x192');
    expect(modelMismatch(carded, await identity({ architecture: 'densenet121' }))).toBeNull();
    expect(modelMismatch(carded, await identity({ architecture: 'mobilenetv2' }))).toMatch(/architecture "densenet121 160x192" vs "mobilenetv2 160x192"/);
    // Before the layout was recorded, a run's identity had no such field: it names no layout.
    const { architecture: _, ...recordedBefore } = resnet;
    expect(modelMismatch(recordedBefore, vgg)).toBeNull();
    const onnx = await modelIdentityOf(await resolveModelSetup(PYTORCH_ONNX, { architecture: 'resnet50' }, files), files);
    expect(onnx.architecture).toBeNull();
  });
});

describe('model setup over http(s)', () => {
  let server: Server;
  let base: string;
  const objects: Record<string, { body: Buffer; etag?: string }> = {
    '/m/resnet.onnx': { body: readFileSync(PYTORCH_ONNX), etag: '"abc123"' },
    '/m/resnet.model.json': { body: Buffer.from(JSON.stringify({ centerCrop: true, labels: 'labels.txt' })) },
    '/m/labels.txt': { body: Buffer.from('x\ny\n') },
    '/n/net.h5': { body: HDF5 },
  };
  const requests: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(`${req.method} ${req.url} ${req.headers.range ?? ''}`.trim());
      const object = objects[req.url ?? ''];
      if (!object) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': object.body.length, ...(object.etag ? { etag: object.etag } : {}) });
      res.end(req.method === 'HEAD' ? undefined : object.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => new Promise<void>((resolve) => server.close(() => resolve())));

  it('reads the card and labels beside remote weights, sniffs the producer from the head, fingerprints by ETag', async () => {
    const setup = await resolveModelSetup(`${base}/m/resnet.onnx`, {}, files);
    expect(setup).toMatchObject({ producer: 'pytorch', preprocessing: { mode: 'torch', centerCrop: true }, labels: { source: `${base}/m/labels.txt`, text: 'x\ny\n' } });
    expect(requests).toContain(`GET /m/resnet.onnx bytes=0-65535`);
    const identity = await modelIdentityOf(setup, files);
    expect(identity.fingerprint).toBe('etag:abc123');
    expect(identity.labels).toBe(`sha256:${createHash('sha256').update('x\ny\n').digest('hex')}`);
  });

  it('hashes the content when the server sends no ETag; a missing card is no card', async () => {
    const setup = await resolveModelSetup(`${base}/n/net.h5`, {}, files);
    expect(setup.card).toBeNull();
    expect((await modelIdentityOf(setup, files)).fingerprint).toBe(`sha256:${createHash('sha256').update(HDF5).digest('hex')}`);
  });
});
