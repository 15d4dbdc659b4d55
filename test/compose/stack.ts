/**
 * The compose test's handle on a running docker-compose stack: the compose and docker commands,
 * the merged CI configuration, container state and health, the lk services' HTTP endpoints.
 * Everything goes through the real docker CLI and real HTTP on 127.0.0.1.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parse } from 'yaml';

export const REPO_ROOT = join(import.meta.dirname, '..', '..');

/** The CI override's knobs (infra/docker/compose.ci.yml); the test sets every one of them. */
export interface CiSettings {
  kafkaPort: number;
  kafkaControllerPort: number;
  speed1Port: number;
  speed2Port: number;
  batchPort: number;
  servePort: number;
  /** The S3 server that keeps the lake. */
  s3Port: number;
  genCount: number;
  genSeed: number;
  genStart: string;
}

export function ciEnvironment(s: CiSettings): Record<string, string> {
  return {
    LK_CI_KAFKA_PORT: String(s.kafkaPort),
    LK_CI_KAFKA_CONTROLLER_PORT: String(s.kafkaControllerPort),
    LK_CI_SPEED1_PORT: String(s.speed1Port),
    LK_CI_SPEED2_PORT: String(s.speed2Port),
    LK_CI_BATCH_PORT: String(s.batchPort),
    LK_CI_SERVE_PORT: String(s.servePort),
    LK_CI_S3_PORT: String(s.s3Port),
    LK_CI_GEN_COUNT: String(s.genCount),
    LK_CI_GEN_SEED: String(s.genSeed),
    LK_CI_GEN_START: s.genStart,
  };
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; throws with its output when it fails (unless allowFailure). */
export function run(
  cmd: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; allowFailure?: boolean; cwd?: string } = {},
): RunResult {
  const [file, ...args] = cmd;
  const r = spawnSync(file!, args, {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const result = { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (r.error) throw new Error(`${cmd.join(' ')}: ${r.error.message}`);
  if (r.status !== 0 && !opts.allowFailure) {
    const tail = `${result.stdout}\n${result.stderr}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`\`${cmd.join(' ')}\` exited with ${r.status ?? r.signal}:\n${tail}`);
  }
  return result;
}

/**
 * The same, without blocking this process while it runs: vitest's worker must keep answering its
 * runner (a minute-long `docker-compose up` in spawnSync made its RPC time out).
 */
export function runAsync(
  cmd: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; allowFailure?: boolean; cwd?: string } = {},
): Promise<RunResult> {
  const [file, ...args] = cmd;
  return new Promise((resolve, reject) => {
    const child = spawn(file!, args, {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${cmd.join(' ')}: ${err.message}`));
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const result = { status, stdout, stderr };
      if (status !== 0 && !opts.allowFailure) {
        const tail = `${stdout}\n${stderr}`.trim().split('\n').slice(-30).join('\n');
        reject(new Error(`\`${cmd.join(' ')}\` exited with ${status ?? signal}:\n${tail}`));
      } else resolve(result);
    });
  });
}

function works(cmd: string[]): boolean {
  try {
    return run([...cmd], { allowFailure: true, timeoutMs: 30_000 }).status === 0;
  } catch {
    return false;
  }
}

/**
 * The docker client that talks to the daemon: DOCKER, else `docker` on PATH, else Debian's
 * /usr/bin/docker (a newer /usr/local/bin/docker may shadow it; both negotiate the API version).
 */
export function dockerClient(): string {
  for (const c of [process.env.DOCKER, 'docker', '/usr/bin/docker']) {
    if (c && works([c, 'version', '--format', '{{.Server.Version}}'])) return c;
  }
  throw new Error(
    'no docker client can talk to a docker daemon: run the test through `npm run test:compose` (scripts/compose-ci.sh starts dockerd)',
  );
}

/** docker-compose 1.29 (Debian) or the Compose v2 plugin; LK_COMPOSE overrides (e.g. "docker compose"). */
export function composeCommand(docker: string): string[] {
  if (process.env.LK_COMPOSE) return process.env.LK_COMPOSE.split(' ').filter(Boolean);
  if (works(['docker-compose', 'version'])) return ['docker-compose'];
  if (works([docker, 'compose', 'version'])) return [docker, 'compose'];
  throw new Error('neither docker-compose nor `docker compose` is installed (apt-get install -y docker-compose)');
}

export interface ContainerState {
  id: string;
  status: string;
  health: string | undefined;
  exitCode: number;
  restartCount: number;
}

export class Stack {
  readonly docker = dockerClient();
  readonly compose = composeCommand(this.docker);
  readonly dir: string;
  readonly file: string;

  constructor(
    readonly project: string,
    readonly env: Record<string, string>,
  ) {
    this.dir = join(REPO_ROOT, '.lk', 'compose', project);
    this.file = join(this.dir, 'compose.json');
  }

  /**
   * docker-compose.yml + infra/docker/compose.ci.yml, merged by compose itself (`config`), minus
   * the `ports:` of the services on host networking: docker-compose 1.29 refuses published ports
   * there (Compose v2 ignores them), and the override cannot delete a list the base file sets.
   * Written as JSON (valid YAML): YAML would turn an unquoted ISO date back into a timestamp.
   */
  writeConfig(): { services: string[] } {
    const merged = run([...this.compose, '-f', 'docker-compose.yml', '-f', 'infra/docker/compose.ci.yml', '-p', this.project, 'config'], {
      env: this.env,
    }).stdout;
    const doc = parse(merged) as { services: Record<string, { network_mode?: string; ports?: unknown }> };
    for (const [name, service] of Object.entries(doc.services)) {
      if (service.network_mode !== 'host') throw new Error(`the CI configuration leaves service ${name} off host networking`);
      delete service.ports;
    }
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(this.file, `${JSON.stringify(doc, null, 2)}\n`);
    return { services: Object.keys(doc.services) };
  }

  composeRun(args: string[], opts: { timeoutMs?: number; allowFailure?: boolean } = {}): RunResult {
    return run([...this.compose, '-f', this.file, '-p', this.project, ...args], { env: this.env, ...opts });
  }

  composeRunAsync(args: string[], opts: { timeoutMs?: number; allowFailure?: boolean } = {}): Promise<RunResult> {
    return runAsync([...this.compose, '-f', this.file, '-p', this.project, ...args], { env: this.env, ...opts });
  }

  containerId(service: string): string | undefined {
    const id = this.composeRun(['ps', '-q', service], { allowFailure: true }).stdout.trim().split('\n')[0];
    return id ? id : undefined;
  }

  /** The container's mounts that can be written: volume names or host paths. */
  writableMounts(service: string): string[] {
    const id = this.containerId(service);
    if (!id) return [];
    const r = run([this.docker, 'inspect', '--format', '{{json .Mounts}}', id]);
    const mounts = JSON.parse(r.stdout.trim()) as { Type: string; Name?: string; Source: string; RW: boolean }[];
    return mounts.filter((m) => m.RW).map((m) => (m.Type === 'volume' ? `volume ${m.Name}` : `${m.Type} ${m.Source}`));
  }

  state(service: string): ContainerState | undefined {
    const id = this.containerId(service);
    if (!id) return undefined;
    const r = run([this.docker, 'inspect', '--format', '{{json .State}}|{{.RestartCount}}', id], { allowFailure: true });
    if (r.status !== 0) return undefined;
    const [json, restarts] = r.stdout.trim().split('|');
    const s = JSON.parse(json!) as { Status: string; ExitCode: number; Health?: { Status: string } };
    return { id, status: s.Status, health: s.Health?.Status, exitCode: s.ExitCode, restartCount: Number(restarts) };
  }

  /**
   * Milliseconds from the container's start to its first passing health check, from Docker's
   * own health log (it keeps the last five checks; undefined when the first pass is older).
   */
  healthyAfterStart(service: string): number | undefined {
    const id = this.containerId(service);
    if (!id) return undefined;
    const r = run([this.docker, 'inspect', '--format', '{{.State.StartedAt}}|{{json .State.Health}}', id], { allowFailure: true });
    if (r.status !== 0) return undefined;
    const [startedAt, json] = r.stdout.trim().split('|');
    const health = JSON.parse(json!) as { Log?: { End: string; ExitCode: number }[] } | null;
    const log = health?.Log ?? [];
    const first = log.findIndex((entry) => entry.ExitCode === 0);
    // A pass preceded by nothing in a full log may not be the first one.
    if (first < 0 || (first === 0 && log.length >= 5)) return undefined;
    return Date.parse(log[first]!.End) - Date.parse(startedAt!);
  }

  kill(service: string): string {
    const id = this.containerId(service);
    if (!id) throw new Error(`no container for service ${service}`);
    run([this.docker, 'kill', id]);
    return id;
  }

  /** The last lines of every service's log, for a failure report. */
  diagnostics(lines = 60): string {
    const ps = this.composeRun(['ps'], { allowFailure: true });
    const logs = this.composeRun(['logs', '--no-color', '--tail', String(lines)], { allowFailure: true, timeoutMs: 60_000 });
    return `--- ${this.compose.join(' ')} ps\n${ps.stdout}${ps.stderr}\n--- logs (last ${lines} lines per service)\n${logs.stdout}${logs.stderr}`;
  }

  down(): RunResult {
    return this.composeRun(['down', '-v', '--remove-orphans', '--timeout', '30'], { allowFailure: true, timeoutMs: 180_000 });
  }
}

/** GET a JSON endpoint of an lk service on 127.0.0.1; undefined when it does not answer. */
export async function getJson<T>(port: number, path: string): Promise<{ status: number; body: T } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: (await res.json()) as T };
  } catch {
    return undefined;
  }
}

export async function graphql<T>(port: number, query: string): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors?.length || !body.data) {
    throw new Error(`GraphQL at 127.0.0.1:${port} answered ${res.status}: ${JSON.stringify(body.errors ?? body).slice(0, 800)}`);
  }
  return body.data;
}

/**
 * The batch run each `lk serve` worker has installed, asked over `connections` new connections
 * (no keep-alive): node:cluster hands new connections to the workers in turn, so a few of them
 * reach every worker, whereas fetch's pooled connection would ask the same worker every time.
 * A worker that has not installed a run yet answers null.
 */
export async function batchRunsOfWorkers(port: number, connections: number): Promise<(string | null)[]> {
  const ask = () =>
    new Promise<string | null>((resolve, reject) => {
      const body = JSON.stringify({ query: '{ pipeline { serving { batchView { runId } } } }' });
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/graphql',
          method: 'POST',
          agent: false,
          timeout: 10_000,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            try {
              const parsed = JSON.parse(text) as { data?: { pipeline: { serving: { batchView: { runId: string } | null } } } };
              if (!parsed.data) throw new Error(`GraphQL answered ${res.statusCode}: ${text.slice(0, 300)}`);
              resolve(parsed.data.pipeline.serving.batchView?.runId ?? null);
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from 127.0.0.1:${port} in 10 s`)));
      req.on('error', reject);
      req.end(body);
    });
  const runs: (string | null)[] = [];
  // One after the other: concurrent connections could all land while the turn is on one worker.
  for (let i = 0; i < connections; i++) runs.push(await ask());
  return runs;
}

/** True when something accepts connections on 127.0.0.1:port. */
export function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (used: boolean) => {
      socket.destroy();
      resolve(used);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Polls `check` until it returns a value other than undefined. On timeout the error says what was
 * awaited and what `describe` reports about the last attempt.
 */
export async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, describe?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}${describe ? `; last seen: ${describe()}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
