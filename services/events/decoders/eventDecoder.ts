/**
 * The decoding seam: how a record (value bytes, key, timestamp) becomes an event under a metric
 * file's mapping. Every layer decodes through this interface (ingest, the speed layer, the lake
 * writer), so a format beside JSON (Avro, Protobuf with a schema registry) is one more module
 * here that `createEventDecoder` returns, without touching the layers. JSON is the one format
 * today (jsonDecoder.ts).
 *
 * A decoder is reusable and not re-entrant: `decode` fills it in place (no allocation per event
 * on its fast paths), and the accessors describe the last decoded record.
 */
import type { FieldValue, EventMapping } from '../../metrics/fieldSemantics.ts';
import type { RecordLimits, Rejection } from '../event.ts';
import { JsonEventDecoder } from './jsonDecoder.ts';

export const EVENT_FORMATS = ['json'] as const;
export type EventFormat = (typeof EVENT_FORMATS)[number];

export interface EventDecoder {
  /**
   * Decodes the record whose value is value[start..end) (null: a tombstone), with its key (null:
   * none) and timestamp (epoch ms; -1: none). True: an event, described by the accessors below;
   * false: `rejection` says why.
   */
  decode(value: Buffer | null, start: number, end: number, key: Uint8Array | null, timestamp: number, limits: RecordLimits): boolean;

  // ---- after true
  /** Event time, epoch ms. */
  readonly ts: number;
  /** The id's bytes are idBuf[idStart..idEnd) (services/metrics/fieldSemantics.ts). */
  readonly idBuf: Uint8Array;
  readonly idStart: number;
  readonly idEnd: number;
  /** The id as text (`idText`: its UTF-8, or `\x` and hex). */
  idText(): string;
  /** Whether the id's bytes are its text as is (then `idText` is their UTF-8): what the lake's `id` column copies. */
  idIsText(): boolean;
  /** The mapped type's text, or undefined when the mapping has none. */
  typeText(): string | undefined;
  /** The type text's UTF-8 bytes are typeBuf[typeStart..typeEnd); typeBuf is null when the mapping has no type. */
  readonly typeBuf: Uint8Array | null;
  readonly typeStart: number;
  readonly typeEnd: number;
  /** The values of the fields the decoder was made for, as the metric engines read them (only those the event has). */
  fieldValues(): Record<string, FieldValue>;

  // ---- after false
  readonly rejection: Rejection;
  /** Whether the refused record is still a readable JSON object (event.ts `readableObject`): the lake keeps it. */
  readable(): boolean;
}

/** A decoder for records of `format` under `mapping`, reading the metric fields `fields` (their texts in the metric file). */
export function createEventDecoder(mapping: EventMapping, fields: readonly string[], format: EventFormat = 'json'): EventDecoder {
  switch (format) {
    case 'json':
      return new JsonEventDecoder(mapping, fields);
  }
}
