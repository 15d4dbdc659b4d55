#!/usr/bin/env node
// Apache Spark for the batch layer's Spark engine (`lk batch run --engine spark`), installed once
// into a cache: pinned pyspark and delta-spark from PyPI, the Delta jars from Maven Central, and
// Hadoop's S3A jars for a lake on S3 (hadoop-aws at pyspark's Hadoop, the AWS SDK bundle). The
// logic is batch/engines/spark/sparkInstall.ts (lk installs on first use too); this runs it from
// the command line.
//
// CLI: node scripts/spark.mjs resolve     (prints the cache as JSON; .ci/run calls it cold)
// Environment (optional): LK_SPARK_CACHE, LK_PYTHON, JAVA_HOME (see sparkInstall.ts).
import { register } from 'tsx/esm/api';

register();
const cmd = process.argv[2] ?? 'help';
if (cmd === 'resolve') {
  const { ensureSpark, ensureSparkS3 } = await import('../batch/engines/spark/sparkInstall.ts');
  try {
    const s = ensureSpark();
    const s3aJars = ensureSparkS3(s);
    console.log(JSON.stringify({ python: s.python, jars: s.jars, s3aJars, java: s.java }));
  } catch (e) {
    process.stderr.write(`spark: ${e.message}\n${e.details ? `${e.details}\n` : ''}`);
    process.exit(1);
  }
} else {
  console.log('usage: node scripts/spark.mjs resolve   (env: LK_SPARK_CACHE, LK_PYTHON, JAVA_HOME)');
}
