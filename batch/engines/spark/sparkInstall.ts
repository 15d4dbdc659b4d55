/**
 * Getting Apache Spark for the Spark engine (`lk batch run --engine spark`): a Python virtual
 * environment with pinned pyspark and delta-spark from PyPI (Spark's own jars come inside
 * pyspark), and the Delta jars from Maven Central (`mvn dependency:copy`), created once in a cache
 * on first use. Nothing else is downloaded: Spark is never asked to resolve packages itself (no
 * spark.jars.packages). `node scripts/spark.mjs resolve` runs the same from the command line
 * (.ci/run does it cold).
 *
 * Environment (optional):
 *   LK_SPARK_CACHE  the cache (default ~/.cache/lambda-kappa/spark-<pyspark>-delta-<delta>)
 *   LK_PYTHON       the Python that creates the venv (default python3; 3.9 or newer)
 *   JAVA_HOME       the Java Spark runs on (else `java` on PATH; 17 or newer)
 */
import { spawnSync, type SpawnSyncOptions, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** Pinned: Spark 4.0 runs on Java 17, and Delta 4.0.x is built for it. */
export const PYSPARK_VERSION = '4.0.5';
export const DELTA_VERSION = '4.0.1';
export const SPARK_PACKAGES = [`pyspark==${PYSPARK_VERSION}`, `delta-spark==${DELTA_VERSION}`];
/** Maven Central artifacts copied into <cache>/jars (Spark's own jars are inside pyspark). */
export const SPARK_JARS = [`io.delta:delta-spark_2.13:${DELTA_VERSION}`, `io.delta:delta-storage:${DELTA_VERSION}`];

export class SparkSetupError extends Error {
  constructor(
    message: string,
    readonly details?: string,
  ) {
    super(message);
    this.name = 'SparkSetupError';
  }
}

function run(cmd: string, args: string[], options: SpawnSyncOptions = {}): SpawnSyncReturns<string> {
  const res = spawnSync(cmd, args, { maxBuffer: 64 * 1024 * 1024, ...options, encoding: 'utf8' });
  if (res.error) throw new SparkSetupError(`cannot run ${cmd}: ${res.error.message}`);
  return res;
}

function which(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

/** The java binary Spark will use, checked to be 17 or newer (a clear message otherwise). */
export function findJava(env: NodeJS.ProcessEnv = process.env): { java: string; javaHome: string; major: number } {
  const java = env.JAVA_HOME ? join(env.JAVA_HOME, 'bin', 'java') : which('java', env);
  if (!java || !existsSync(java)) {
    throw new SparkSetupError(
      `Java not found (${env.JAVA_HOME ? `JAVA_HOME=${env.JAVA_HOME} has no bin/java` : '`java` is not on PATH'}): the Spark engine needs a JDK 17 or newer, e.g. \`apt-get install openjdk-17-jre-headless\`, or set JAVA_HOME`,
    );
  }
  const res = run(java, ['-version']);
  const m = /version "(\d+)(?:\.(\d+))?/.exec(res.stderr ?? '');
  const major = m ? (Number(m[1]) === 1 ? Number(m[2]) : Number(m[1])) : 0;
  if (major < 17)
    throw new SparkSetupError(
      `${java} is Java ${major || 'of an unknown version'}; the Spark engine needs Java 17 or newer (set JAVA_HOME)`,
    );
  return { java, javaHome: env.JAVA_HOME ?? resolve(dirname(java), '..'), major };
}

/** The cache folder of the pinned versions. */
export function sparkCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.LK_SPARK_CACHE ?? join(homedir(), '.cache', 'lambda-kappa', `spark-${PYSPARK_VERSION}-delta-${DELTA_VERSION}`));
}

function layout(dir: string): { dir: string; python: string; jars: string[] } {
  const jarsDir = join(dir, 'jars');
  const jars = existsSync(jarsDir)
    ? readdirSync(jarsDir)
        .filter((f) => f.endsWith('.jar'))
        .sort()
        .map((f) => join(jarsDir, f))
    : [];
  return { dir, python: join(dir, 'venv', 'bin', 'python'), jars };
}

/**
 * The venv's Python and the Delta jars, installing them the first time (about a minute: pip
 * downloads about 500 MB of wheels, Maven two jars). Built in a temporary folder and renamed into
 * place, so that two processes starting at once never see a half-made cache. Java and Python are
 * checked first, with a message saying what to install.
 */
export interface SparkInstall {
  dir: string;
  python: string;
  jars: string[];
  java: string;
  javaHome: string;
  major: number;
  built: boolean;
}

export function ensureSpark(opts: { env?: NodeJS.ProcessEnv; quiet?: boolean } = {}): SparkInstall {
  const env = opts.env ?? process.env;
  const java = findJava(env);
  const dir = sparkCacheDir(env);
  if (existsSync(join(dir, '.complete'))) return { ...layout(dir), ...java, built: false };
  const log = opts.quiet ? () => undefined : (m: string) => process.stderr.write(`[spark] ${m}\n`);
  const base = env.LK_PYTHON ?? 'python3';
  const probe = spawnSync(base, ['-c', 'import sys, venv; print("%d.%d" % sys.version_info[:2])'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new SparkSetupError(
      `Python not found or without venv (${base}): the Spark engine installs pyspark into a virtual environment once; install Python 3.9+ with venv (e.g. \`apt-get install python3-venv\`) or set LK_PYTHON`,
    );
  }
  const mvn = which('mvn', env);
  if (!mvn)
    throw new SparkSetupError(
      'Maven not found (`mvn` on PATH is needed once, to fetch the Delta jars from Maven Central): install Maven 3.6+',
    );
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const t0 = Date.now();
  const fail = (message: string, details?: string): never => {
    rmSync(tmp, { recursive: true, force: true });
    throw new SparkSetupError(message, details);
  };
  log(`installing Spark into ${dir} (one-time, about a minute): [1/3] Python venv...`);
  let res = run(base, ['-m', 'venv', join(tmp, 'venv')]);
  if (res.status !== 0) fail(`${base} -m venv failed (Python 3.9+ with venv is needed)`, res.stderr);
  log(`[2/3] pip install ${SPARK_PACKAGES.join(' ')} (about 500 MB from PyPI)...`);
  res = run(join(tmp, 'venv', 'bin', 'python'), ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', ...SPARK_PACKAGES]);
  if (res.status !== 0) fail(`pip install ${SPARK_PACKAGES.join(' ')} failed`, `${res.stdout}\n${res.stderr}`.trim().slice(-2000));
  log(`[3/3] ${SPARK_JARS.join(', ')} from Maven Central...`);
  for (const artifact of SPARK_JARS) {
    res = run(mvn, ['-q', '-B', 'dependency:copy', `-Dartifact=${artifact}`, `-DoutputDirectory=${join(tmp, 'jars')}`]);
    if (res.status !== 0) fail(`mvn dependency:copy ${artifact} failed`, `${res.stdout}\n${res.stderr}`.trim().slice(-2000));
  }
  writeFileSync(
    join(tmp, '.complete'),
    `${JSON.stringify({ packages: SPARK_PACKAGES, jars: SPARK_JARS, at: new Date().toISOString() })}\n`,
  );
  try {
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, '.complete'))) throw new SparkSetupError(`cannot move the Spark cache into ${dir}: ${(e as Error).message}`);
  }
  log(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { ...layout(dir), ...java, built: true };
}
