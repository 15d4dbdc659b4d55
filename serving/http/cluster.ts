/**
 * Serving on every core: `lk serve --workers N` (default: the available parallelism) runs N
 * worker processes (node:cluster) that share the port; the primary process holds no views and
 * answers no request. Each worker is a whole `lk serve` (startServe): its own views in memory
 * (the memory cost: N copies, docs/serving-layer.md), its own consumers of the view topics, its
 * own subscriptions. What must be one for all of them goes through the primary:
 *
 * - readiness: each worker reports its own; a worker's /readyz says ready only when every worker
 *   has said so (a restarted worker makes it 503 until it is ready again);
 * - a change of the default version (promote, rollback, retire): the worker that made it asks the
 *   primary to have every worker follow the pointer now, and its mutation returns once all have
 *   answered: no worker answers with the old default after `promote` returns (a worker still
 *   starting then is sent the same request as it starts listening);
 * - rate limits: the token buckets live in the primary (serving/http/rateLimiter.ts), so a client
 *   has one bucket whichever worker its connections reach;
 * - /metrics: the sum over the workers (prom-client's AggregatorRegistry);
 * - SIGTERM/SIGINT: the primary asks every worker to stop gracefully and exits once all have.
 *
 * A worker that dies is replaced (and /readyz says not ready meanwhile); one that dies before
 * listening stops the whole server (its error is on stderr: a configuration that one worker
 * cannot use, no other can).
 *
 * The messages between the primary and the workers are declared here, and only here.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from '../../services/observability/logger.ts';
import type { FollowReport, Propagator } from '../versionsAdmin.ts';
import { TokenBuckets, type Admission, type RateLimiter } from './rateLimiter.ts';
import type { ClusterSide } from './server.ts';

/** Worker -> primary. */
type ToPrimary =
  | { t: 'listening'; url: string; version: string }
  | { t: 'ready'; ready: boolean }
  | { t: 'admit'; id: number; client: string; cost: number }
  | { t: 'charge'; client: string; cost: number }
  | { t: 'propagate'; id: number }
  | { t: 'followed'; id: number; report: FollowReport }
  | { t: 'metrics'; id: number };

/** Primary -> worker. */
type ToWorker =
  | { t: 'readiness'; workers: WorkerReadiness[] }
  | { t: 'admitted'; id: number; admission: Admission }
  | { t: 'follow'; id: number }
  | { t: 'propagated'; id: number; reports: FollowReport[] }
  | { t: 'metricsText'; id: number; text: string }
  | { t: 'shutdown' };

export interface WorkerReadiness {
  worker: number;
  pid: number;
  ready: boolean;
}

const WORKER_ENV = 'LK_SERVE_WORKER_INDEX';
const WORKERS_ENV = 'LK_SERVE_WORKER_COUNT';

/** This process is a worker of `lk serve --workers N`. */
export function isServeWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] !== undefined;
}

function isMessage(m: unknown): m is { t: string } {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string';
}

// ---------------------------------------------------------------------------------------------
// The primary

export interface PrimaryOptions {
  workers: number;
  rateLimit: number;
  rateBurst: number;
  logger: Logger;
  /** How long the workers get to stop (then they are killed). */
  stopTimeoutMs: number;
  /** Resolves when the primary must stop (SIGTERM/SIGINT). */
  stop: Promise<void>;
  /** Called once, when every worker listens. */
  onListening: (url: string, version: string) => void;
}

/** Replacements of dead workers allowed per minute before the primary gives up. */
const MAX_RESTARTS_PER_MINUTE = 5;

/** Runs the workers until `stop`; resolves with the process's exit code. */
export async function runPrimary(options: PrimaryOptions): Promise<number> {
  const { logger } = options;
  const buckets = options.rateLimit === 0 ? undefined : new TokenBuckets(options.rateLimit, options.rateBurst);
  const aggregator = new AggregatorRegistry();
  /** Per worker number: the process, what it reported, and the last propagation it was sent. */
  const slots = new Map<number, { worker: Worker; pid: number; ready: boolean; listening: boolean; followed: number }>();
  const propagations = new Map<number, { origin: Worker; originId: number; waiting: Set<Worker>; reports: FollowReport[] }>();
  let nextPropagation = 1;
  let stopping = false;
  let announced = false;
  let fatal: number | undefined;
  const restarts: number[] = [];
  let settle!: (code: number) => void;
  const done = new Promise<number>((resolve) => (settle = resolve));

  const send = (w: Worker, m: ToWorker) => {
    if (w.isConnected()) w.send(m);
  };
  const readiness = (): WorkerReadiness[] => [...slots].map(([worker, s]) => ({ worker, pid: s.pid, ready: s.ready }));
  const broadcastReadiness = () => {
    const workers = readiness();
    for (const s of slots.values()) send(s.worker, { t: 'readiness', workers });
  };
  const finishPropagation = (id: number) => {
    const p = propagations.get(id);
    if (!p || p.waiting.size > 0) return;
    propagations.delete(id);
    send(p.origin, { t: 'propagated', id: p.originId, reports: p.reports });
  };

  const fork = (n: number) => {
    const worker = cluster.fork({ [WORKER_ENV]: String(n), [WORKERS_ENV]: String(options.workers) });
    slots.set(n, { worker, pid: worker.process.pid ?? 0, ready: false, listening: false, followed: nextPropagation - 1 });
    broadcastReadiness();
    worker.on('message', (m: unknown) => {
      if (!isMessage(m)) return; // prom-client's own messages
      const msg = m as ToPrimary;
      const slot = slots.get(n);
      switch (msg.t) {
        case 'listening':
          if (slot) {
            slot.listening = true;
            // A promotion while it was starting (after it read the pointer, perhaps): follow it now.
            if (slot.followed < nextPropagation - 1) send(worker, { t: 'follow', id: 0 });
          }
          if (!announced && [...slots.values()].every((s) => s.listening)) {
            announced = true;
            options.onListening(msg.url, msg.version);
          }
          return;
        case 'ready':
          if (slot) slot.ready = msg.ready;
          broadcastReadiness();
          return;
        case 'admit':
          send(worker, {
            t: 'admitted',
            id: msg.id,
            admission: buckets?.admit(msg.client, msg.cost) ?? { admitted: true, retryAfterMs: 0 },
          });
          return;
        case 'charge':
          buckets?.charge(msg.client, msg.cost);
          return;
        case 'propagate': {
          const id = nextPropagation++;
          // The workers that answer requests; one still starting follows when it starts listening.
          const listening = [...slots.values()].filter((s) => s.listening && s.worker.isConnected());
          for (const s of listening) s.followed = id;
          const waiting = new Set(listening.map((s) => s.worker));
          propagations.set(id, { origin: worker, originId: msg.id, waiting, reports: [] });
          for (const w of waiting) send(w, { t: 'follow', id });
          return;
        }
        case 'followed': {
          if (msg.id === 0) return; // a starting worker's catch-up
          const p = propagations.get(msg.id);
          if (!p) return;
          p.reports.push(msg.report);
          p.waiting.delete(worker);
          finishPropagation(msg.id);
          return;
        }
        case 'metrics':
          void aggregator
            .clusterMetrics()
            .then((text) => send(worker, { t: 'metricsText', id: msg.id, text }))
            .catch((err: unknown) =>
              send(worker, { t: 'metricsText', id: msg.id, text: `# cannot gather the workers' metrics: ${String(err)}\n` }),
            );
          return;
      }
    });
    worker.on('exit', (code, signal) => {
      const slot = slots.get(n);
      if (slot?.worker !== worker) return;
      slots.delete(n);
      // A propagation waits for no dead worker.
      for (const [id, p] of propagations) if (p.waiting.delete(worker)) finishPropagation(id);
      if (stopping) {
        if (slots.size === 0) settle(fatal ?? 0);
        return;
      }
      broadcastReadiness();
      if (!slot.listening) {
        // It could not start: neither can the others. Stop them all with its exit code.
        logger.error({ worker: n, code, signal }, 'a serving worker failed to start; stopping');
        fatal = code && code > 0 ? code : 1;
        void stopAll();
        return;
      }
      const now = Date.now();
      restarts.push(now);
      while (restarts[0]! < now - 60_000) restarts.shift();
      if (restarts.length > MAX_RESTARTS_PER_MINUTE) {
        logger.error({ worker: n, code, signal }, `serving workers died ${restarts.length} times in a minute; stopping`);
        fatal = 1;
        void stopAll();
        return;
      }
      logger.error({ worker: n, pid: slot.pid, code, signal }, 'a serving worker died; starting another');
      fork(n);
    });
  };

  const stopAll = async () => {
    if (stopping) return;
    stopping = true;
    if (slots.size === 0) return settle(fatal ?? 0);
    for (const s of slots.values()) send(s.worker, { t: 'shutdown' });
    const kill = setTimeout(() => {
      for (const s of slots.values()) {
        logger.error({ pid: s.pid }, 'a serving worker did not stop in time; killing it');
        s.worker.process.kill('SIGKILL');
      }
      fatal ??= 1;
    }, options.stopTimeoutMs);
    kill.unref();
  };

  for (let n = 1; n <= options.workers; n++) fork(n);
  void options.stop.then(stopAll);
  const code = await done;
  buckets?.close();
  return code;
}

// ---------------------------------------------------------------------------------------------
// A worker

/** The worker's side of the protocol: what startServe needs (ClusterSide), and the shutdown request. */
export function workerSide(): ClusterSide & { shutdown: Promise<void>; listening(url: string, version: string): void } {
  const worker = Number(process.env[WORKER_ENV]);
  const workers = Number(process.env[WORKERS_ENV]);
  let table: WorkerReadiness[] = [];
  let nextId = 1;
  const pending = new Map<number, (m: ToWorker) => void>();
  /** Clients the primary refused lately, until when (performance.now()): refused at the door without asking. */
  const blocked = new Map<string, number>();
  let follow: Propagator | undefined;
  let attached = false;
  let onShutdown!: () => void;
  const shutdown = new Promise<void>((resolve) => (onShutdown = resolve));

  // Answers the primary's prom-client metric requests (with the registry attach() sets).
  new AggregatorRegistry();
  const send = (m: ToPrimary) => process.send?.(m);
  const ask = <T extends ToWorker>(m: ToPrimary & { id: number }): Promise<T> =>
    new Promise((resolve) => {
      pending.set(m.id, resolve as (m: ToWorker) => void);
      send(m);
    });

  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    const msg = m as ToWorker;
    switch (msg.t) {
      case 'readiness':
        table = msg.workers;
        return;
      case 'follow':
        void (follow ? follow() : Promise.resolve([]))
          .then((reports) => reports[0])
          .catch((err: unknown) => ({ pid: process.pid, version: '', generation: -1, error: String(err) }))
          .then((report) =>
            send({ t: 'followed', id: msg.id, report: report ?? { pid: process.pid, version: '', generation: -1, error: 'not started' } }),
          );
        return;
      case 'shutdown':
        onShutdown();
        return;
      default: {
        const resolve = pending.get(msg.id);
        pending.delete(msg.id);
        resolve?.(msg);
      }
    }
  });
  // The primary went away (killed): stop too.
  process.on('disconnect', () => onShutdown());

  const limiter: RateLimiter = {
    async admit(client, cost) {
      const { admission } = await ask<Extract<ToWorker, { t: 'admitted' }>>({ t: 'admit', id: nextId++, client, cost });
      if (!admission.admitted) blocked.set(client, performance.now() + admission.retryAfterMs);
      return admission;
    },
    charge(client, cost) {
      send({ t: 'charge', client, cost });
    },
    blockedFor(client) {
      const until = blocked.get(client);
      if (until === undefined) return 0;
      const left = until - performance.now();
      if (left > 0) return left;
      blocked.delete(client);
      return 0;
    },
  };

  return {
    worker,
    workers,
    shutdown,
    listening: (url, version) => send({ t: 'listening', url, version }),
    reportReady: (ready) => send({ t: 'ready', ready }),
    allReady: () => ({ ready: table.length === workers && table.every((w) => w.ready), workers: table }),
    propagate: async () => (await ask<Extract<ToWorker, { t: 'propagated' }>>({ t: 'propagate', id: nextId++ })).reports,
    attach({ registry, follow: f }) {
      AggregatorRegistry.setRegistries([registry]);
      follow = f;
      attached = true;
    },
    limiter,
    metricsText: async () => {
      if (!attached) return '';
      return (await ask<Extract<ToWorker, { t: 'metricsText' }>>({ t: 'metrics', id: nextId++ })).text;
    },
  };
}
