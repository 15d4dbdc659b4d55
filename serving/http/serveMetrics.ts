/** Prometheus metrics of the serving process (its own registry, so several servers can share a process in tests). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { VersionRegistry } from '../views/versionRegistry.ts';
import type { WindowSubscriptions } from '../subscriptions.ts';
import type { Authenticator } from '../auth/authenticator.ts';

export interface ServeMetrics {
  registry: Registry;
  requests: Counter<'operation' | 'outcome'>;
  duration: Histogram<'operation'>;
  batchSwaps: Counter<'version'>;
  executions: Counter<'executor'>;
  refusals: Counter<'code'>;
  yields: Counter;
  cutOffs: Counter;
}

export function createServeMetrics(versions: VersionRegistry, subscriptions: WindowSubscriptions, auth?: Authenticator): ServeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'lk_serve_' });
  const requests = new Counter({
    name: 'lk_serve_graphql_requests_total',
    help: 'GraphQL requests by root field and outcome (ok, user_error, error, unauthenticated, forbidden, rate_limited, cut_off)',
    labelNames: ['operation', 'outcome'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'lk_serve_graphql_request_duration_seconds',
    help: 'GraphQL request latency by root field',
    labelNames: ['operation'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  const batchSwaps = new Counter({
    name: 'lk_serve_batch_view_swaps_total',
    help: 'Batch views installed',
    labelNames: ['version'] as const,
    registers: [registry],
  });
  const executions = new Counter({
    name: 'lk_serve_graphql_executions_total',
    help: 'GraphQL executions by executor: jit (compiled query), jit_errors_graphql_js (answer had errors, re-executed by graphql-js), graphql_js',
    labelNames: ['executor'] as const,
    registers: [registry],
  });
  const refusals = new Counter({
    name: 'lk_serve_refusals_total',
    help: 'Requests and subscriptions refused by a limit, a role or auth, by code (TOO_MANY_ALIASES, QUERY_TOO_COSTLY, RATE_LIMITED, FORBIDDEN, UNAUTHENTICATED, ...)',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  const yields = new Counter({
    name: 'lk_serve_execution_yields_total',
    help: 'Times a request gave the event loop back after running for --execution-slice',
    registers: [registry],
  });
  const cutOffs = new Counter({
    name: 'lk_serve_execution_cutoffs_total',
    help: 'Requests and subscription events cut off after using --execution-budget of event-loop time',
    registers: [registry],
  });
  if (auth?.tokensFile) {
    const file = auth.tokensFile;
    new Gauge({
      name: 'lk_serve_tokens_file_reloads',
      help: 'Reloads of the tokens file since start, by outcome (ok, failed: the previous tokens stay)',
      labelNames: ['outcome'] as const,
      registers: [registry],
      collect() {
        this.set({ outcome: 'ok' }, file.reloads);
        this.set({ outcome: 'failed' }, file.failures);
      },
    });
    new Gauge({
      name: 'lk_serve_tokens',
      help: 'Tokens in the tokens file in use',
      registers: [registry],
      collect() {
        this.set(file.value.size);
      },
    });
  }
  new Gauge({
    name: 'lk_serve_speed_view_rows_applied',
    help: 'Speed view rows applied since start',
    labelNames: ['version'] as const,
    registers: [registry],
    collect() {
      for (const r of versions.all()) this.set({ version: r.version }, r.view.speedStats.rows);
    },
  });
  new Gauge({
    name: 'lk_serve_speed_view_lag_records',
    help: 'Records of the speed view topic not yet materialized, per partition',
    labelNames: ['version', 'partition'] as const,
    registers: [registry],
    collect() {
      for (const r of versions.all()) {
        for (const p of r.materializer.partitionPositions())
          this.set({ version: r.version, partition: String(p.partition) }, Math.max(0, p.highWatermark - p.nextOffset));
      }
    },
  });
  new Gauge({
    name: 'lk_serve_speed_view_freshness_seconds',
    help: 'Now minus the latest processing time in the speed view',
    labelNames: ['version'] as const,
    registers: [registry],
    collect() {
      for (const r of versions.all()) {
        const t = r.view.speedStats.maxProcessingTime;
        if (t !== null) this.set({ version: r.version }, (Date.now() - t) / 1000);
      }
    },
  });
  new Gauge({
    name: 'lk_serve_batch_view_age_seconds',
    help: 'Now minus the finish time of the installed batch run',
    labelNames: ['version'] as const,
    registers: [registry],
    collect() {
      for (const r of versions.all()) {
        const b = r.view.batch;
        if (b) this.set({ version: r.version }, (Date.now() - b.manifest.finishedAt) / 1000);
      }
    },
  });
  new Gauge({
    name: 'lk_serve_ready',
    help: '1 when the version can answer (speed view caught up, batch view loaded if published)',
    labelNames: ['version'] as const,
    registers: [registry],
    collect() {
      for (const r of versions.all()) this.set({ version: r.version }, versions.isReady(r.version) ? 1 : 0);
    },
  });
  new Gauge({
    name: 'lk_serve_subscriptions',
    help: 'Open windowUpdated subscriptions',
    registers: [registry],
    collect() {
      this.set(subscriptions.active);
    },
  });
  return { registry, requests, duration, batchSwaps, executions, refusals, yields, cutOffs };
}
