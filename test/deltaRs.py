"""delta-rs (the `deltalake` package) on the platform's lake, for tests (test/deltaRs.ts runs it).

  python test/deltaRs.py read URI [VERSION]   -> JSON: version, rows, ids, keys (partition:offset), types
  python test/deltaRs.py append URI ROWS.json -> JSON: version (rows appended with write_deltalake)
  python test/deltaRs.py optimize URI         -> JSON: version, metrics (delta-rs's own compaction)
  python test/deltaRs.py checkpoint URI       -> JSON: version

A table on S3 is reached with the standard AWS settings of the environment (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), plain HTTP allowed, and conditional puts
for commits (delta-rs's safe concurrent writes on S3-compatible servers).
"""
import datetime as dt
import json
import os
import sys
from collections import Counter

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def storage_options():
    if not os.environ.get("AWS_ENDPOINT_URL"):
        return None
    keys = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
    opts = {k: os.environ[k] for k in keys if os.environ.get(k)}
    opts["AWS_ALLOW_HTTP"] = "true"
    opts["aws_conditional_put"] = "etag"
    return opts


def table(uri, version=None):
    return DeltaTable(uri, version=version, storage_options=storage_options())


def read(uri, version=None):
    t = table(uri, None if version is None else int(version))
    rows = t.to_pyarrow_table(columns=["id", "type", "kafka_partition", "kafka_offset", "event_time"]).to_pylist()
    print(
        json.dumps(
            {
                "version": t.version(),
                "rows": len(rows),
                "ids": sorted({r["id"] for r in rows if r["id"] is not None}),
                "keys": sorted(f"{r['kafka_partition']}:{r['kafka_offset']}" for r in rows),
                "types": dict(Counter(r["type"] for r in rows)),
                "nullEventTimes": sum(1 for r in rows if r["event_time"] is None),
            }
        )
    )


def append(uri, path):
    with open(path) as f:
        rows = json.load(f)
    ts = lambda ms: None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    data = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.string()),
            "type": pa.array([r["type"] for r in rows], pa.string()),
            "event_time": pa.array([ts(r["ts"]) for r in rows], pa.timestamp("us", tz="UTC")),
            "kafka_key": pa.array([r["id"].encode() for r in rows], pa.binary()),
            "record_timestamp": pa.array([ts(r["ts"]) for r in rows], pa.timestamp("us", tz="UTC")),
            "kafka_partition": pa.array([r["partition"] for r in rows], pa.int32()),
            "kafka_offset": pa.array([r["offset"] for r in rows], pa.int64()),
            "raw": pa.array([r["raw"] for r in rows], pa.string()),
            "id_hash": pa.array([r["idHash"] for r in rows], pa.int32()),
            "dt": pa.array([ts(r["ts"]).date() for r in rows], pa.date32()),
            "hr": pa.array([ts(r["ts"]).hour for r in rows], pa.int32()),
        }
    )
    t = table(uri)
    # Only the columns the table has, the others left null: a converted lake's legacy ones (epoch
    # milliseconds) and event_mapping (null reads as the flat model, which these rows follow).
    null_types = {"event_mapping": pa.string()}
    for field in t.schema().fields:
        if field.name not in data.column_names:
            data = data.append_column(field.name, pa.nulls(len(rows), null_types.get(field.name, pa.int64())))
    write_deltalake(uri, data, mode="append", storage_options=storage_options())
    print(json.dumps({"version": table(uri).version()}))


def optimize(uri):
    t = table(uri)
    metrics = t.optimize.compact()
    print(json.dumps({"version": table(uri).version(), "metrics": metrics}, default=str))


def checkpoint(uri):
    t = table(uri)
    t.create_checkpoint()
    print(json.dumps({"version": t.version()}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"read": read, "append": append, "optimize": optimize, "checkpoint": checkpoint}[cmd](*args)
    # delta-rs's native threads sometimes abort the interpreter's teardown ("terminate called
    # without an active exception"); the work is done and printed, so leave without a teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
