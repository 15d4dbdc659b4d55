/**
 * Parquet checkpoints of the Delta log, written and read with DuckDB.
 *
 * A checkpoint ("Checkpoints" and "Checkpoint Schema" in PROTOCOL.md, V1 spec, classic name) is
 * one Parquet file with one column per action kind (`protocol`, `metaData`, `txn`, `add`,
 * `remove`), each a struct, one action per row (the other columns null). Its `partitionValues`,
 * `tags`, `format.options` and `configuration` are Parquet maps of strings.
 *
 * Why DuckDB: it is already the platform's Parquet engine, and it writes nested structs and
 * standard Parquet MAP columns (a repeated `key_value` group of `key` and `value`) that delta-rs
 * (arrow-rs) and Spark read; checked by the interoperability test, where delta-rs opens a table
 * from a checkpoint alone. The actions go in as the same JSON lines a commit holds, typed by the
 * column declarations below (DuckDB turns a JSON object into a MAP), so there is one serializer
 * for commits and checkpoints. Reading turns each row into JSON (`to_json` of the row) and parses
 * it with the action schemas of actions.ts, so a checkpoint written by delta-rs or Spark, with
 * columns this platform does not know, is read the same way.
 *
 * Loaded lazily (deltaLog.ts imports it when a checkpoint is read or written), so commands that
 * never touch the lake do not load DuckDB.
 */
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { InfrastructureError, errorMessage } from '../../errors.ts';
import { sqlQuote } from '../../storage/sql.ts';
import { parseAction, type Action } from './actions.ts';

const MAP = 'MAP(VARCHAR, VARCHAR)';

/** The checkpoint's columns ("Checkpoint Schema"), as DuckDB types. */
const CHECKPOINT_COLUMNS: Record<string, string> = {
  protocol: 'STRUCT(minReaderVersion INTEGER, minWriterVersion INTEGER)',
  metaData: `STRUCT(id VARCHAR, name VARCHAR, description VARCHAR, format STRUCT(provider VARCHAR, options ${MAP}), schemaString VARCHAR, partitionColumns VARCHAR[], createdTime BIGINT, configuration ${MAP})`,
  txn: 'STRUCT(appId VARCHAR, version BIGINT, lastUpdated BIGINT)',
  add: `STRUCT(path VARCHAR, partitionValues ${MAP}, size BIGINT, modificationTime BIGINT, dataChange BOOLEAN, stats VARCHAR, tags ${MAP})`,
  remove: `STRUCT(path VARCHAR, deletionTimestamp BIGINT, dataChange BOOLEAN, extendedFileMetadata BOOLEAN, partitionValues ${MAP}, size BIGINT)`,
};

/** What a checkpoint keeps of each action: its columns above (commitInfo is never checkpointed). */
function checkpointRow(action: Action): Record<string, unknown> | undefined {
  if ('protocol' in action) {
    const { minReaderVersion, minWriterVersion } = action.protocol;
    return { protocol: { minReaderVersion, minWriterVersion } };
  }
  if ('metaData' in action) return { metaData: action.metaData };
  if ('txn' in action) return { txn: action.txn };
  if ('add' in action) {
    const { path, partitionValues, size, modificationTime, dataChange, stats, tags } = action.add;
    return { add: { path, partitionValues, size, modificationTime, dataChange, stats: stats ?? null, tags: tags ?? null } };
  }
  if ('remove' in action) {
    // "remove actions in the checkpoint are tombstones used only by VACUUM": no stats, no tags.
    const { path, deletionTimestamp, dataChange, extendedFileMetadata, partitionValues, size } = action.remove;
    return {
      remove: {
        path,
        deletionTimestamp: deletionTimestamp ?? null,
        dataChange,
        extendedFileMetadata: extendedFileMetadata ?? null,
        partitionValues: partitionValues ?? null,
        size: size ?? null,
      },
    };
  }
  return undefined;
}

/**
 * Writes `actions` (a reconciled snapshot: protocol, metaData, txns, adds, tombstones) as a
 * checkpoint Parquet file at `path` (local). `scratch` is a local folder for the JSON input.
 */
export async function writeCheckpointFile(actions: readonly Action[], path: string, scratch: string): Promise<{ rows: number }> {
  const input = join(scratch, `checkpoint-${process.pid}-${randomBytes(4).toString('hex')}.ndjson`);
  const lines: string[] = [];
  for (const a of actions) {
    const row = checkpointRow(a);
    if (row) lines.push(JSON.stringify(row));
  }
  writeFileSync(input, lines.join('\n') + '\n');
  const db = await DuckDBInstance.create(':memory:', { threads: '1' });
  const conn = await db.connect();
  try {
    const columns = `{${Object.entries(CHECKPOINT_COLUMNS)
      .map(([name, type]) => `${sqlQuote(name)}: ${sqlQuote(type)}`)
      .join(', ')}}`;
    await conn.run(
      `COPY (SELECT ${Object.keys(CHECKPOINT_COLUMNS).join(', ')} FROM read_json(${sqlQuote(input)}, format = 'newline_delimited', columns = ${columns}, maximum_object_size = 1073741824))
       TO ${sqlQuote(path)} (FORMAT parquet, COMPRESSION snappy)`,
    );
    return { rows: lines.length };
  } catch (err) {
    throw new InfrastructureError(`cannot write the Delta checkpoint ${path}: ${errorMessage(err)}`, { cause: err });
  } finally {
    conn.closeSync();
    db.closeSync();
    rmSync(input, { force: true });
  }
}

/**
 * The actions of a checkpoint (all its parts, local files), in file order. A row holds one action
 * (one non-null column); columns of other kinds (`domainMetadata`, ...) are ignored like unknown
 * actions; a V2 checkpoint's `checkpointMetadata` or `sidecar` rows are refused (they need the
 * v2Checkpoint reader feature, which the protocol check refuses first).
 */
export async function readCheckpointFiles(paths: readonly string[], where: string): Promise<Action[]> {
  const db = await DuckDBInstance.create(':memory:', { threads: '1' });
  const conn = await db.connect();
  try {
    const reader = await conn.runAndReadAll(
      `SELECT to_json(cp)::VARCHAR FROM read_parquet([${paths.map(sqlQuote).join(', ')}], union_by_name = true) AS cp`,
    );
    const actions: Action[] = [];
    for (const [i, [text]] of (reader.getRows() as [string][]).entries()) {
      const row = JSON.parse(text) as Record<string, unknown>;
      for (const [kind, value] of Object.entries(row)) {
        if (value === null) continue;
        if (kind === 'checkpointMetadata' || kind === 'sidecar')
          throw new InfrastructureError(`${where}: a V2 checkpoint (${kind}), which this platform does not read`);
        actions.push(parseAction({ [kind]: value }, `${where}, row ${i + 1}`));
      }
    }
    return actions;
  } catch (err) {
    if (err instanceof InfrastructureError) throw err;
    throw new InfrastructureError(`cannot read the Delta checkpoint ${where}: ${errorMessage(err)}`, { cause: err });
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}
