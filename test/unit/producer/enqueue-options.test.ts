import { configErrorOf } from '../../helpers/errors.js';
import { describe, expect, it } from 'vitest';
import { deriveRunId, parseEnqueueRequest } from '../../../src/producer/enqueue-options.js';
import { enqueueRun } from '../../../src/producer/enqueue.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { parseTargets } from '../../../src/shared/explain-options.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import { validateRunId } from '../../../src/shared/queue/contract.js';

describe('parseEnqueueRequest', () => {
  it('applies defaults: explain options, derived run id, output under gradcam-audit/<run>/ in the source bucket', () => {
    const r = parseEnqueueRequest('s3://photos-bucket/2024/cats/', {});
    expect(r.options).toEqual(DEFAULT_EXPLAIN_OPTIONS);
    // Absent, not false: runs without --faithfulness keep the option hash (and run id) they had.
    expect('faithfulness' in r.options).toBe(false);
    expect(r.derivedRunId).toBe(true);
    expect(r.runId).toMatch(/^photos-bucket-2024-cats-[0-9a-f]{10}$/);
    expect(validateRunId(r.runId)).toBe(r.runId);
    expect(r.output).toEqual({ bucket: 'photos-bucket', key: `gradcam-audit/${r.runId}/` });
    expect(r.dryRun).toBe(false);
    expect(r.pageSize).toBe(1000);
    expect(parseEnqueueRequest('s3://photos-bucket/2024/cats/', { pageSize: '25' }).pageSize).toBe(25);
  });

  it('takes --architecture as a model flag of --weights (part of the model identity)', () => {
    const r = parseEnqueueRequest('s3://bkt/in', { weights: 's3://bkt/models/w.h5', architecture: 'densenet121' });
    expect(r.modelSource).toEqual({ weights: 's3://bkt/models/w.h5', options: { architecture: 'densenet121' } });
  });

  it('parses every explain flag', () => {
    const r = parseEnqueueRequest('s3://bkt/in', {
      topK: '3', targets: '281,285,281', method: 'layercam', score: 'logit', resize: 'bilinear', colormap: 'jet', alpha: '0.25', format: 'png', maxSide: '512', layer: 'block4_conv3', faithfulness: true,
      include: '*.jpg, cats/**', exclude: 'tmp/**', output: 's3://out-bkt/audits', runId: 'r-1', model: 'vgg16 v2', dryRun: true,
    });
    expect(r.options).toEqual({ topK: 3, targets: { kind: 'indices', indices: [281, 285] }, method: 'layercam', score: 'logit', resize: 'bilinear', colormap: 'jet', alpha: 0.25, overlayFormat: 'png', maxSide: 512, layer: 'block4_conv3', faithfulness: true });
    expect(r.include).toEqual(['*.jpg', 'cats/**']);
    expect(r.exclude).toEqual(['tmp/**']);
    expect(r.output).toEqual({ bucket: 'out-bkt', key: 'audits/' });
    expect(r).toMatchObject({ runId: 'r-1', derivedRunId: false, model: 'vgg16 v2', dryRun: true });
  });

  it('caps the overlay at 1024 px by default; --max-side full keeps the original size', () => {
    expect(parseEnqueueRequest('s3://bkt/in', {}).options.maxSide).toBe(1024);
    expect(parseEnqueueRequest('s3://bkt/in', { maxSide: '2048' }).options.maxSide).toBe(2048);
    const full = parseEnqueueRequest('s3://bkt/in', { maxSide: 'full' }).options;
    expect('maxSide' in full).toBe(false);
  });

  it.each([
    [{ maxSide: 'none' }, '--max-side'],
    [{ topK: '0' }, '--top-k'],
    [{ topK: '2.5' }, '--top-k'],
    [{ targets: 'top2' }, '--targets'],
    [{ targets: '1,,2' }, '--targets'],
    [{ method: 'gradcam+' }, '--method'],
    [{ score: 'softmax' }, '--score'],
    [{ resize: 'bicubic' }, '--resize'],
    [{ colormap: 'rainbow' }, '--colormap'],
    [{ alpha: '1.5' }, '--alpha'],
    [{ alpha: 'half' }, '--alpha'],
    [{ format: 'gif' }, '--format'],
    [{ maxSide: '4' }, '--max-side'],
    [{ layer: 'block5 conv3' }, '--layer'],
    [{ include: 'a,,b' }, '--include'],
    [{ exclude: ',' }, '--exclude'],
    [{ output: 'out/' }, '--output'],
    [{ runId: 'has:colon' }, '--run-id'],
    [{ model: '' }, '--model'],
    [{ pageSize: '0' }, '--page-size'],
    [{ pageSize: '1001' }, '--page-size'],
    [{ architecture: 'resnet' }, '--architecture'],
    [{ architecture: 'resnet50' }, '--weights'],
  ])('rejects %j naming %s', (flags, name) => {
    const err = configErrorOf(() => parseEnqueueRequest('s3://bkt/in/', flags));
    expect(err.variable).toBe(name);
    expect(err.message.startsWith(`${name}: expected`) || err.message.startsWith(`${name}:`)).toBe(true);
  });

  it('refuses dot segments in --output and SOURCE (a key such as ../x would leave the intended prefix)', async () => {
    for (const output of ['s3://bkt/../x', 's3://bkt/audits/./r1', 's3://bkt/audits/%2E%2e/elsewhere/']) {
      const err = configErrorOf(() => parseEnqueueRequest('s3://bkt/in/', { output }));
      expect(err.variable).toBe('--output');
      expect(err.message).toContain('segment');
    }
    expect(configErrorOf(() => parseEnqueueRequest('s3://bkt/in/../secret/', {})).variable).toBe('SOURCE');
    // A request built in code, past the flag parser, is refused before anything is listed.
    const crafted = { ...parseEnqueueRequest('s3://bkt/in/', { dryRun: true }), output: { bucket: 'bkt', key: 'in/../elsewhere/' } };
    const unused = {} as ObjectStore;
    await expect(enqueueRun(crafted, { store: unused })).rejects.toThrow(/--output: .*"\.\." segment/);
    // Dots that are not whole segments stay legal.
    expect(parseEnqueueRequest('s3://bkt/in/.../x/', { output: 's3://bkt/out.d/..x/' }).output).toEqual({ bucket: 'bkt', key: 'out.d/..x/' });
  });

  it('rejects malformed source URIs, naming SOURCE', () => {
    for (const uri of ['bkt/in', 's3://', 's3:///x', 'http://bkt/in', 's3://B_/x/..']) {
      expect(configErrorOf(() => parseEnqueueRequest(uri, {})).variable).toBe('SOURCE');
    }
  });
});

describe('deriveRunId', () => {
  const base = { source: { bucket: 'b', key: 'in/' }, include: [], exclude: [], options: { ...DEFAULT_EXPLAIN_OPTIONS }, model: '' };
  it('is the same for the same request (so re-running resumes) and differs when anything defining the run differs', () => {
    const id = deriveRunId(base);
    expect(deriveRunId({ ...base, options: { ...DEFAULT_EXPLAIN_OPTIONS } })).toBe(id);
    const variants = [
      deriveRunId({ ...base, source: { bucket: 'b', key: 'in2/' } }),
      deriveRunId({ ...base, include: ['*.png'] }),
      deriveRunId({ ...base, exclude: ['x/**'] }),
      deriveRunId({ ...base, options: { ...DEFAULT_EXPLAIN_OPTIONS, method: 'hirescam' } }),
      deriveRunId({ ...base, model: 'm' }),
      deriveRunId({ ...base, output: { bucket: 'o', key: 'x/' } }),
    ];
    expect(new Set([id, ...variants]).size).toBe(variants.length + 1);
  });

  it('stays a valid run id for any key, however long or odd', () => {
    for (const key of ['', 'ünï cödé/+%/', `${'deep/'.repeat(40)}`, '...', '-leading']) {
      const id = deriveRunId({ ...base, source: { bucket: 'my.bucket', key } });
      expect(validateRunId(id)).toBe(id);
    }
  });
});

describe('parseTargets', () => {
  it('accepts top1, topk and index lists', () => {
    expect(parseTargets('top1')).toEqual({ kind: 'top1' });
    expect(parseTargets('topk')).toEqual({ kind: 'topk' });
    expect(parseTargets(' 3 , 999 ')).toEqual({ kind: 'indices', indices: [3, 999] });
    expect(() => parseTargets('-1')).toThrow(/--targets/);
  });
});
