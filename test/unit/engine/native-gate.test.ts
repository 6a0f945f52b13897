/**
 * The native-call gate (native-gate.ts): closing waits for the calls in progress and refuses new
 * ones, so the thread that owns an engine thread never ends it inside an ONNX Runtime call.
 */
import { describe, expect, it } from 'vitest';
import { EngineDisposedError } from '../../../src/shared/errors.js';
import { closeNativeGate, createNativeGateMemory, nativeCallInProgress, sharedNativeGate } from '../../../src/worker/engine/native-gate.js';

function deferred(): { promise: Promise<string>; resolve: (v: string) => void } {
  let resolve: (v: string) => void = () => undefined;
  const promise = new Promise<string>((r) => (resolve = r));
  return { promise, resolve };
}

describe('native-call gate', () => {
  it('closes only once the calls in progress have ended', async () => {
    const memory = createNativeGateMemory();
    const gate = sharedNativeGate(memory);
    const [a, b] = [deferred(), deferred()];
    const calls = [gate.through(() => a.promise), gate.through(() => b.promise)];
    expect(nativeCallInProgress(memory)).toBe(true);
    let closed = false;
    const closing = closeNativeGate(memory).then(() => (closed = true));
    a.resolve('a');
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false); // b is still in progress
    b.resolve('b');
    await closing;
    expect(await Promise.all(calls)).toEqual(['a', 'b']);
    expect(nativeCallInProgress(memory)).toBe(false);
  });

  it('refuses calls once closed, without starting them, and stays closed', async () => {
    const memory = createNativeGateMemory();
    const gate = sharedNativeGate(memory);
    await closeNativeGate(memory);
    let started = false;
    await expect(
      gate.through(async () => {
        started = true;
      }),
    ).rejects.toBeInstanceOf(EngineDisposedError);
    expect(started).toBe(false);
    await closeNativeGate(memory); // idempotent
    await expect(gate.through(async () => 1)).rejects.toBeInstanceOf(EngineDisposedError);
  });

  it('stops waiting once the computing thread is gone, though its call never ended', async () => {
    const memory = createNativeGateMemory();
    const gate = sharedNativeGate(memory);
    void gate.through(() => new Promise<never>(() => undefined)); // died inside: never settles
    const gone = new AbortController();
    let closed = false;
    const closing = closeNativeGate(memory, gone.signal).then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false);
    gone.abort();
    await closing;
    expect(nativeCallInProgress(memory)).toBe(true); // the count never fell; the wait ended anyway
  });

  it('counts a failed call as ended', async () => {
    const memory = createNativeGateMemory();
    const gate = sharedNativeGate(memory);
    await expect(gate.through(() => Promise.reject(new Error('run failed')))).rejects.toThrow('run failed');
    expect(nativeCallInProgress(memory)).toBe(false);
    await closeNativeGate(memory);
  });
});
