/**
 * Hosts on one machine for tests of the platform across hosts (test/e2e/threeHosts.spec.ts): each
 * host has its own loopback address (127.0.0.2, .3, ...) for its HTTP ports and its own private
 * data folder, which no other host can see. The hosts share only what the test gives all of them:
 * the Kafka broker and the S3 server.
 *
 * Privacy by mount namespaces (root only: `unshare --mount --propagation private`): every `lk`
 * process of a host runs in a mount namespace of its own in which the host's real folder is bound
 * onto one path that all hosts use as `--data-dir`, and a tmpfs is mounted over the folder that
 * holds every host's real folder. A process of host 1 therefore sees host 1's files at the data
 * path and nothing of hosts 2 and 3, whatever path it tries. Where namespaces are not allowed
 * (not root), each host gets its data folder at its own path, and `openedForeignFiles` checks,
 * from /proc/<pid>/fd, that no process of a host holds a file of another host's folder open.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { LK_BIN } from './cli.ts';

export interface HostProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface Host {
  name: string;
  /** Its loopback address, for the HTTP ports of its processes. */
  ip: string;
  /** The `--data-dir` its processes are given. */
  dataDir: string;
  /** Its folder as the test (outside every namespace) sees it. */
  realDir: string;
  /** Runs `lk args...` on this host. */
  lk(args: string[], env?: Record<string, string>): HostProcess;
  /** Runs `lk args...` on this host to its end; throws with its output unless it exits 0. */
  run(args: string[], env?: Record<string, string>): Promise<string>;
  /** A shell command on this host (to show what it can see). */
  shell(command: string): Promise<string>;
  /** SIGKILLs every process of the host still running (a host that dies). */
  killAll(): Promise<void>;
  processes(): HostProcess[];
}

/** Whether this machine lets the tests make mount namespaces (root, unshare present). */
export function mountNamespacesWork(): boolean {
  const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true'], { stdio: 'ignore' });
  return probe.status === 0;
}

/**
 * `count` hosts under `root` (`root/real/<name>` their folders, `root/data` the shared data path
 * in namespaces), on 127.0.0.2 and up. `env` goes to every process (the broker, the S3 settings).
 */
export function createHosts(root: string, count: number, env: Record<string, string>): { hosts: Host[]; namespaces: boolean } {
  const namespaces = mountNamespacesWork();
  const realRoot = join(root, 'real');
  const sharedPath = join(root, 'data');
  mkdirSync(sharedPath, { recursive: true });
  const running = new Set<ChildProcess>();
  const hosts = Array.from({ length: count }, (_, i): Host => {
    const name = `host${i + 1}`;
    const realDir = join(realRoot, name);
    mkdirSync(realDir, { recursive: true });
    const dataDir = namespaces ? sharedPath : realDir;
    const mine = new Set<HostProcess>();
    const start = (argv: string[], extraEnv: Record<string, string>): HostProcess => {
      const fullEnv = { ...process.env, LK_LOG_LEVEL: 'warn', LK_NO_PROGRESS: '1', ...env, ...extraEnv };
      // In its namespace: the host's folder at the data path, every host's real folder hidden.
      const child = namespaces
        ? spawn(
            'unshare',
            [
              '--mount',
              '--propagation',
              'private',
              '--',
              'sh',
              '-c',
              'mount --bind "$1" "$2" && mount -t tmpfs lk-hidden "$3" && shift 3 && exec "$@"',
              name,
              realDir,
              sharedPath,
              realRoot,
              ...argv,
            ],
            { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] },
          )
        : spawn(argv[0]!, argv.slice(1), { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      running.add(child);
      const proc: HostProcess = {
        child,
        output: () => out,
        exited: new Promise((resolve) =>
          child.on('exit', (code, signal) => {
            running.delete(child);
            mine.delete(proc);
            resolve({ code, signal });
          }),
        ),
      };
      mine.add(proc);
      return proc;
    };
    const host: Host = {
      name,
      ip: `127.0.0.${i + 2}`,
      dataDir,
      realDir,
      lk: (args, extraEnv = {}) => start([process.execPath, LK_BIN, ...args, '--data-dir', dataDir], extraEnv),
      async run(args, extraEnv = {}) {
        const p = host.lk(args, extraEnv);
        const { code, signal } = await p.exited;
        if (code !== 0) throw new Error(`${name}: lk ${args.join(' ')} exited with ${code ?? signal}:\n${p.output().slice(-3000)}`);
        return p.output();
      },
      async shell(command) {
        const p = start(['sh', '-c', command], {});
        await p.exited;
        return p.output();
      },
      async killAll() {
        const procs = [...mine];
        for (const p of procs) p.child.kill('SIGKILL');
        await Promise.all(procs.map((p) => p.exited));
      },
      processes: () => [...mine],
    };
    return host;
  });
  return { hosts, namespaces };
}

/**
 * Files of another host's folder that a process of `host` holds open now (from /proc/<pid>/fd,
 * as this machine names them): empty when the hosts are kept apart. Meaningful without
 * namespaces; in namespaces the other folders are not even visible.
 */
export function openedForeignFiles(host: Host, others: Host[]): string[] {
  const found: string[] = [];
  for (const p of host.processes()) {
    const pid = p.child.pid;
    if (pid === undefined) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // exited meanwhile
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      for (const o of others) if (target.startsWith(`${o.realDir}/`)) found.push(`${host.name} pid ${pid}: ${target}`);
    }
  }
  return found;
}
