/**
 * Entry point of the engine thread: builds the real engine from the transferred ModelSpec and
 * serves explain/predict calls one at a time (the batcher never sends two at once anyway).
 */
import { parentPort } from 'node:worker_threads';
import type { Engine } from '../engine/engine.js';
import { createEngine } from '../engine/factory.js';
import { createLogger } from '../../shared/logger.js';
import { sharedNativeGate } from '../engine/native-gate.js';
import type { FromEngineThread, ToEngineThread, WireError } from './engine-thread-protocol.js';
import { resultBuffers } from './engine-thread-protocol.js';

const port = parentPort;
if (!port) throw new Error('engine-thread-main must run in a worker thread');

let engine: Engine | null = null;

function wire(err: unknown): WireError {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  return { name: e.name, message: e.message, ...(typeof code === 'string' ? { code } : {}) };
}

function send(message: FromEngineThread, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer);
}

port.on('message', (message: ToEngineThread) => {
  void handle(message);
});

async function handle(message: ToEngineThread): Promise<void> {
  switch (message.type) {
    case 'init':
      try {
        const { spec, engine: choice, backend, layer, onnx, logLevel } = message.init;
        // The thread logs for itself (stderr is shared): the engine factory explains its choice,
        // e.g. why a model falls back from ONNX Runtime to TF.js.
        const logger = createLogger({ level: logLevel ?? 'info', base: { component: 'engine-thread' } });
        // The main thread ends this thread only through the gate: never inside an ONNX Runtime call.
        engine = await createEngine({ spec, engine: choice, backend, layer, onnx, logger, nativeGate: sharedNativeGate(message.gate) });
        send({ type: 'ready', info: engine.info });
      } catch (err) {
        send({ type: 'initFailed', error: wire(err) });
      }
      return;
    case 'explain':
      try {
        if (!engine) throw new Error('engine thread not initialised');
        const results = await engine.explain(message.request);
        send({ type: 'explained', id: message.id, results }, resultBuffers(results));
      } catch (err) {
        send({ type: 'failed', id: message.id, error: wire(err) });
      }
      return;
    case 'predict':
      try {
        if (!engine) throw new Error('engine thread not initialised');
        const probabilities = await engine.predict(message.images);
        send({ type: 'predicted', id: message.id, probabilities });
      } catch (err) {
        send({ type: 'failed', id: message.id, error: wire(err) });
      }
      return;
    case 'dispose':
      try {
        await engine?.dispose();
        engine = null;
        send({ type: 'disposed', id: message.id });
      } catch (err) {
        send({ type: 'failed', id: message.id, error: wire(err) });
      }
      return;
  }
}
