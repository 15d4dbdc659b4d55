/**
 * Getting Apache Spark for the Spark engine (`lk batch run --engine spark`): a Python virtual
 * environment with pinned pyspark and delta-spark from PyPI (Spark's own jars come inside
 * pyspark), and the Delta jars from Maven Central (`mvn dependency:copy`), created once in a cache
 * on first use. Nothing else is downloaded: Spark is never asked to resolve packages itself (no
 * spark.jars.packages). `node scripts/spark.mjs resolve` runs the same from the command line
 * (.ci/run does it cold).
 *
 * A lake on S3 needs Hadoop's S3A file system as well (ensureSparkS3, on the first run over such a
 * lake): `org.apache.hadoop:hadoop-aws` at the Hadoop version inside pyspark (its
 * hadoop-client-api jar says which) and the AWS SDK v2 `bundle` at the version hadoop-aws's POM
 * names (its parent's `aws-java-sdk-v2.version`), both from Maven Central into <cache>/s3a/jars.
 * The bundle is large (2.24.6: 558 MB, about 22 s cold here), but it is the only form of the SDK
 * that works here: S3AFileSystem needs the transfer manager's classes at load time
 * (NoClassDefFoundError: software/amazon/awssdk/transfer/s3/model/ObjectTransfer without them),
 * and `software.amazon.awssdk:s3-transfer-manager` is not served at 2.24.6 by the registry this
 * project may use; a newer SDK than the one Hadoop was built and tested with is not an option.
 * Maven checks every downloaded file's checksum and fails on a mismatch (`--strict-checksums`).
 *
 * Environment (optional):
 *   LK_SPARK_CACHE  the cache (default ~/.cache/lambda-kappa/spark-<pyspark>-delta-<delta>)
 *   LK_PYTHON       the Python that creates the venv (default python3; 3.9 or newer)
 *   JAVA_HOME       the Java Spark runs on (else `java` on PATH; 17 or newer)
 */
import { spawnSync, type SpawnSyncOptions, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** Pinned: Spark 4.0 runs on Java 17, and Delta 4.0.x is built for it. */
export const PYSPARK_VERSION = '4.0.5';
export const DELTA_VERSION = '4.0.1';
export const SPARK_PACKAGES = [`pyspark==${PYSPARK_VERSION}`, `delta-spark==${DELTA_VERSION}`];
/** Maven Central artifacts copied into <cache>/jars (Spark's own jars are inside pyspark). */
export const SPARK_JARS = [`io.delta:delta-spark_2.13:${DELTA_VERSION}`, `io.delta:delta-storage:${DELTA_VERSION}`];
/** Maven's flags for every download: batch mode, quiet, a checksum mismatch fails the download. */
const MVN_FLAGS = ['-q', '-B', '--strict-checksums'];

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
    res = run(mvn, [...MVN_FLAGS, 'dependency:copy', `-Dartifact=${artifact}`, `-DoutputDirectory=${join(tmp, 'jars')}`]);
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

/** The Hadoop version inside the venv's pyspark (its `hadoop-client-api-<version>.jar`). */
export function pysparkHadoopVersion(python: string): string {
  const venv = resolve(dirname(python), '..');
  const lib = join(venv, 'lib');
  for (const py of existsSync(lib) ? readdirSync(lib) : []) {
    const jars = join(lib, py, 'site-packages', 'pyspark', 'jars');
    if (!existsSync(jars)) continue;
    const m = readdirSync(jars)
      .map((f) => /^hadoop-client-api-(\d+\.\d+\.\d+)\.jar$/.exec(f))
      .find((x) => x !== null);
    if (m) return m[1]!;
  }
  throw new SparkSetupError(`cannot tell pyspark's Hadoop version: no pyspark/jars/hadoop-client-api-*.jar under ${lib}`);
}

/** The S3A jars in the cache (<cache>/s3a/jars), installing them the first time (see the module comment). */
export function ensureSparkS3(install: SparkInstall, opts: { env?: NodeJS.ProcessEnv; quiet?: boolean } = {}): string[] {
  const env = opts.env ?? process.env;
  const dir = join(install.dir, 's3a');
  const listJars = () =>
    readdirSync(join(dir, 'jars'))
      .filter((f) => f.endsWith('.jar'))
      .sort()
      .map((f) => join(dir, 'jars', f));
  if (existsSync(join(dir, '.complete'))) return listJars();
  const log = opts.quiet ? () => undefined : (m: string) => process.stderr.write(`[spark] ${m}\n`);
  const mvn = which('mvn', env);
  if (!mvn)
    throw new SparkSetupError(
      "Maven not found (`mvn` on PATH is needed once, to fetch Hadoop's S3A jars from Maven Central for a lake on S3): install Maven 3.6+",
    );
  const hadoop = pysparkHadoopVersion(install.python);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  // A local repository of its own, deleted at the end: the bundle is not kept twice on disk.
  const repo = ['-Dmaven.repo.local=' + join(tmp, 'm2')];
  const fail = (message: string, details?: string): never => {
    rmSync(tmp, { recursive: true, force: true });
    throw new SparkSetupError(message, details);
  };
  const t0 = Date.now();
  log(`S3A for a lake on S3 (one-time, into ${dir}): [1/2] the AWS SDK version of org.apache.hadoop:hadoop-aws:${hadoop}...`);
  let res = run(mvn, [
    ...MVN_FLAGS,
    ...repo,
    'dependency:copy',
    `-Dartifact=org.apache.hadoop:hadoop-project:${hadoop}:pom`,
    `-DoutputDirectory=${tmp}`,
  ]);
  if (res.status !== 0)
    fail(`mvn dependency:copy org.apache.hadoop:hadoop-project:${hadoop}:pom failed`, `${res.stdout}\n${res.stderr}`.trim().slice(-2000));
  const pom = readFileSync(join(tmp, `hadoop-project-${hadoop}.pom`), 'utf8');
  const sdk = /<aws-java-sdk-v2\.version>([0-9][0-9.]*)<\/aws-java-sdk-v2\.version>/.exec(pom)?.[1];
  if (sdk === undefined)
    fail(`hadoop-project ${hadoop}'s POM names no aws-java-sdk-v2.version: cannot pick the AWS SDK bundle for hadoop-aws ${hadoop}`);
  const artifacts = [`org.apache.hadoop:hadoop-aws:${hadoop}`, `software.amazon.awssdk:bundle:${sdk}`];
  log(`[2/2] ${artifacts.join(', ')} from Maven Central (the SDK bundle is about 560 MB)...`);
  for (const artifact of artifacts) {
    res = run(mvn, [...MVN_FLAGS, ...repo, 'dependency:copy', `-Dartifact=${artifact}`, `-DoutputDirectory=${join(tmp, 'jars')}`]);
    if (res.status !== 0) fail(`mvn dependency:copy ${artifact} failed`, `${res.stdout}\n${res.stderr}`.trim().slice(-2000));
  }
  rmSync(join(tmp, 'm2'), { recursive: true, force: true });
  rmSync(join(tmp, `hadoop-project-${hadoop}.pom`), { force: true });
  writeFileSync(join(tmp, '.complete'), `${JSON.stringify({ jars: artifacts, at: new Date().toISOString() })}\n`);
  try {
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, '.complete'))) throw new SparkSetupError(`cannot move the S3A jars into ${dir}: ${(e as Error).message}`);
  }
  log(`S3A ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return listJars();
}
