/**
 * writeArtifacts: the two images are written at once, the prediction document only after both
 * are stored (its presence means the image's outputs are complete), and a failed image write leaves
 * no document behind.
 */
import { describe, expect, it } from 'vitest';
import type { ImageManifest } from '../../../src/shared/manifest.js';
import { writeArtifacts, type ImageCoreOutput } from '../../../src/worker/core/image-core.js';

function output(): ImageCoreOutput {
  const image = (data: string, format: 'jpeg' | 'png') => ({ data: Buffer.from(data), format, mimeType: `image/${format}`, extension: format === 'jpeg' ? 'jpg' : 'png', width: 2, height: 1 });
  return { document: { schema: 'test', targets: [], timings: {} } as unknown as ImageManifest, rendered: { overlay: image('overlay', 'jpeg'), heatmap: image('heatmap', 'png') } };
}

/** A writer whose writes finish only when the test says so, recording what happened when. */
function gatedWriter(fail?: string) {
  const events: string[] = [];
  const pending = new Map<string, () => void>();
  const write = (spec: { name: string }, data: Buffer, contentType: string): Promise<void> => {
    events.push(`start ${spec.name} ${contentType} ${data.length}`);
    return new Promise<void>((resolve, reject) => {
      pending.set(spec.name, () => {
        events.push(`done ${spec.name}`);
        if (spec.name === fail) reject(new Error(`${spec.name} failed`));
        else resolve();
      });
    });
  };
  const finish = async (name: string): Promise<void> => {
    for (let i = 0; i < 50 && !pending.has(name); i++) await new Promise((r) => setImmediate(r));
    const done = pending.get(name);
    if (!done) throw new Error(`${name} was never started; events: ${events.join(', ')}`);
    pending.delete(name);
    done();
  };
  return { events, write, finish, started: (name: string) => pending.has(name) };
}

describe('writeArtifacts', () => {
  it('starts both images at once and the document only after both are stored', async () => {
    const w = gatedWriter();
    const before: string[] = [];
    const writing = writeArtifacts(output(), w.write, () => before.push('beforeDocument'));
    await new Promise((r) => setImmediate(r));
    expect(w.events).toEqual(['start overlay image/jpeg 7', 'start heatmap image/png 7']);
    await w.finish('heatmap');
    await new Promise((r) => setImmediate(r));
    expect(w.started('prediction')).toBe(false); // the overlay is still being written
    await w.finish('overlay');
    await w.finish('prediction');
    await writing;
    expect(w.events.slice(2, 4)).toEqual(['done heatmap', 'done overlay']);
    expect(w.events[4]).toMatch(/^start prediction application\/json \d+$/);
    expect(before).toEqual(['beforeDocument']);
  });

  it('writes no document when an image write fails, and waits for the other image first', async () => {
    const w = gatedWriter('overlay');
    const writing = writeArtifacts(output(), w.write);
    const outcome = writing.then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    await w.finish('overlay');
    await new Promise((r) => setImmediate(r));
    expect(await Promise.race([outcome, new Promise((r) => setTimeout(() => r('pending'), 20))])).toBe('pending');
    await w.finish('heatmap');
    expect(await outcome).toBe('overlay failed');
    expect(w.events.some((e) => e.startsWith('start prediction'))).toBe(false);
  });
});
