/**
 * Schema evolution of the lake table: a table written before columns existed (here without
 * `kafka_key` and `event_mapping`, as the Delta lake had them before the event-shape work) gets
 * them, nullable, in one ADD COLUMNS commit when a writer opens it, once, also with two writers
 * opening it at once; a schema change built on metadata that changed meanwhile
 * is refused (MetadataChanged).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { dataDirLayout } from '../../config/dataDir.ts';
import { tempDir } from '../../../test/helpers.ts';
import { parseCommit, commitKey } from '../delta/actions.ts';
import { DeltaConflictError, DeltaLog } from '../delta/deltaLog.ts';
import { resolveLake } from '../lakeLocation.ts';
import { LAKE_PROTOCOL, lakeIncompatibility, lakeMetadata, openLakeForWriting } from '../lakeTable.ts';

const dir = tempDir('lk-lake-evolution-');
afterAll(() => dir.remove());

describe('the lake table gains the columns added since it was written', () => {
  it('adds the missing nullable columns once, with two writers opening the table at once', async () => {
    const lake = await resolveLake(undefined, dataDirLayout(dir.path), 'events');
    const old = lakeMetadata('events');
    const schema = JSON.parse(old.schemaString) as { type: string; fields: { name: string }[] };
    old.schemaString = JSON.stringify({
      ...schema,
      fields: schema.fields.filter((f) => f.name !== 'kafka_key' && f.name !== 'event_mapping'),
    });
    const log = await DeltaLog.open({ store: lake.store, scratch: lake.scratch });
    await log.commit({ kind: 'create', protocol: LAKE_PROTOCOL, metaData: old });
    expect(lakeIncompatibility(log.current!)).toMatch(/no column kafka_key/);

    const [a, b] = await Promise.all([openLakeForWriting(lake), openLakeForWriting(lake)]);
    const latest = (await a.refresh())!;
    expect(latest.version).toBe(1);
    expect(lakeIncompatibility(latest)).toBeUndefined();
    expect(latest.schema!.fields.find((f) => f.name === 'kafka_key')).toMatchObject({ type: 'binary', nullable: true });
    expect(latest.schema!.fields.find((f) => f.name === 'event_mapping')).toMatchObject({ type: 'string', nullable: true });
    expect(latest.metadata!.id).toBe(old.id);
    expect((await b.refresh())!.version).toBe(1);
    const actions = parseCommit((await lake.store.get(commitKey(1)))!.bytes.toString(), 'v1');
    expect(actions.map((x) => Object.keys(x)[0])).toEqual(['commitInfo', 'metaData']);

    // Built on the schema before, after it changed: refused.
    const err = await a
      .commit({ kind: 'metadata', metaData: { ...latest.metadata!, description: 'x' }, basedOn: old.schemaString })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaConflictError);
    expect((err as DeltaConflictError).conflict).toBe('MetadataChanged');
  });
});
