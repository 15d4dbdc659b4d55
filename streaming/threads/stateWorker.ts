/**
 * A state thread of the speed job: one StateRegistry, driven by messages from the main thread
 * (stateHost.ts) and answering each in order. Runs in a worker thread started through
 * services/runtime/tsWorker.js with `workerData.registry` (the registry's configuration).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { StateRegistry, type RegistryConfig } from './stateRegistry.ts';
import type { StateRequest, StateReply } from './stateHost.ts';

const port = parentPort;
if (!port) throw new Error('stateWorker.ts runs in a worker thread');
const registry = new StateRegistry((workerData as { registry: RegistryConfig }).registry);

/** The buffer of `bytes` when nothing else shares it (then it can be transferred, not copied). */
function ownBuffer(bytes: Uint8Array): ArrayBuffer[] {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? [bytes.buffer as ArrayBuffer] : [];
}

port.on('message', (req: StateRequest) => {
  let reply: StateReply;
  let transfer: ArrayBuffer[] = [];
  try {
    switch (req.op) {
      case 'open':
        reply = { id: req.id, ok: true, result: registry.open(req.partition, req.committed, req.beginning, req.warmUntil) };
        break;
      case 'apply':
        reply = { id: req.id, ok: true, result: registry.applyPacked(req.batch) };
        break;
      case 'capture': {
        const capture = registry.capture(req.partition, req.chain);
        if (capture)
          transfer = [...ownBuffer(capture.snapshot), ...ownBuffer(capture.rowValues), capture.rowValueEnds.buffer as ArrayBuffer];
        reply = { id: req.id, ok: true, result: capture };
        break;
      }
      case 'drop':
        registry.drop(req.partition);
        reply = { id: req.id, ok: true, result: undefined };
        break;
      case 'measure':
        reply = { id: req.id, ok: true, result: registry.stats(req.partition, true) };
        break;
    }
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    reply = { id: req.id, ok: false, error: { name: e.name, message: e.message } };
  }
  port.postMessage(reply, transfer);
});
