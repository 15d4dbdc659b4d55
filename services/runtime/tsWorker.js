// Entry point of worker threads that run TypeScript modules. Loader hooks are per thread in
// Node 20, so the worker registers tsx's loader itself, then imports the module named in
// `workerData.module` (a file URL); the module reads the rest of workerData.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.module);
