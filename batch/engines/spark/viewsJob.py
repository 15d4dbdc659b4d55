"""The batch views on Apache Spark: runs a plan that lambda-kappa compiled from a version's metric
definitions (batch/engines/spark/sparkPlan.ts) over the lake's Delta table, and writes the view
rows as Parquet for the Node side to check and publish (batch/engines/spark/sparkViews.ts).

    python viewsJob.py <plan.json>                      (lk batch run --engine spark does this)
    spark-submit --jars <jars> viewsJob.py <plan.json>  (under your own scheduler: lk batch plan
                                                         writes the plan, lk batch publish
                                                         publishes the rows; docs/spark.md)

The plan (JSON): table (a path or s3a:// URI), version (the Delta version to read: the run's cut),
lakeColumns, statements, rowsQuery, countsQuery, output (a folder), and Spark settings (master,
conf). Progress goes to stdout one JSON object a line ({"phase": ...}); the result is
<output>/rows/*.parquet and <output>/counts.json. The job ends itself when its standard input
closes (the `lk` process that started it died), so that no Spark job outlives its run.
"""
import json
import os
import sys
import threading
import time


def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def watch_parent():
    # EOF on stdin: the parent is gone (killed, crashed). No run outlives it.
    if os.environ.get("LK_SPARK_WATCH_STDIN") == "1":
        sys.stdin.read()
        os._exit(3)


def fail_reading(table, error):
    """Ends the job (exit code 2) with one line naming why the lake could not be read, from S3A's
    answer (which names the object and the status, never a credential); any other error goes up
    as it is."""
    text = str(error)
    if "AccessDeniedException" in text or "Status Code: 403" in text:
        why = "object storage refused the credentials (403 Access Denied): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    elif "ClassNotFoundException" in text and "S3AFileSystem" in text:
        why = "Hadoop's S3A jars are not on the classpath: pass the jars `lk batch plan` prints (--jars)"
    elif "UnknownHostException" in text or "Connection refused" in text or "SdkClientException" in text:
        why = "object storage did not answer: check AWS_ENDPOINT_URL"
    elif "DELTA_TABLE_NOT_FOUND" in text or "is not a Delta table" in text:
        why = "there is no Delta table there"
    else:
        raise error
    sys.stderr.write("lk-spark-error: cannot read the lake at %s: %s\n" % (table, why))
    sys.stderr.flush()
    os._exit(2)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    threading.Thread(target=watch_parent, daemon=True).start()
    started = time.time()
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    # Under spark-submit (its JVM is up: PYSPARK_GATEWAY_PORT) the scheduler's own settings win
    # (--master, --conf, --jars): the plan's only fill in what it left unset.
    given = {}
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        from pyspark import SparkConf

        given = dict(SparkConf().getAll())
    builder = SparkSession.builder.appName(plan.get("appName", "lk-batch-views"))
    if plan.get("master") and "spark.master" not in given:
        builder = builder.master(plan["master"])
    for key, value in plan.get("conf", {}).items():
        if key not in given:
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    say(phase="spark started", seconds=round(time.time() - started, 2))

    try:
        lake = spark.read.format("delta").option("versionAsOf", int(plan["version"])).load(plan["table"])
    except Exception as e:  # noqa: BLE001 - one line naming the cause, for lk and for a scheduler's log
        fail_reading(plan["table"], e)
    present = set(lake.columns)
    for name, sql_type in plan["lakeColumns"].items():
        if name not in present:
            lake = lake.withColumn(name, F.lit(None).cast(sql_type))
    lake.createOrReplaceTempView("lake")
    for statement in plan["statements"]:
        spark.sql(statement)
    say(phase="events read", seconds=round(time.time() - started, 2))

    counts = spark.sql(plan["countsQuery"]).collect()[0].asDict()
    spark.sql(plan["rowsQuery"]).write.mode("overwrite").parquet(os.path.join(plan["output"], "rows"))
    say(phase="rows written", seconds=round(time.time() - started, 2))
    with open(os.path.join(plan["output"], "counts.json.tmp"), "w", encoding="utf-8") as f:
        json.dump({k: int(v) for k, v in counts.items()}, f)
    os.replace(os.path.join(plan["output"], "counts.json.tmp"), os.path.join(plan["output"], "counts.json"))
    spark.stop()
    say(phase="done", seconds=round(time.time() - started, 2))


if __name__ == "__main__":
    main()
