/**
 * Dead letters: every line that is not a valid event goes to the dead-letter topic
 * (`<topic>.dlq`) with its raw bytes and why it was refused. Nothing is dropped silently.
 *
 * Record layout (documented in docs/contracts.md):
 * - key: `<source>:<line>`
 * - value: the raw bytes of the line, exactly as read (the head only for oversized lines,
 *   whose full size is in `lk.original-bytes`)
 * - headers: `lk.reason` (code), `lk.message`, `lk.field`, `lk.expected`, `lk.got`,
 *   `lk.source`, `lk.line`, `lk.ingested-at` (ISO-8601), `lk.original-bytes`
 */
import type { Rejection } from '../events/event.ts';
import type { Headers, LogRecord, OutgoingRecord } from '../log/eventLog.ts';

/** Raw bytes kept in a dead letter; below Kafka's default 1 MiB record limit. */
export const MAX_DEAD_LETTER_BYTES = 256 * 1024;

export interface DeadLetterSource {
  source: string;
  line: number;
}

export function deadLetterRecord(raw: Buffer, rejection: Rejection, where: DeadLetterSource, originalBytes = raw.length): OutgoingRecord {
  const headers: Headers = {
    'lk.reason': rejection.code,
    'lk.message': rejection.message,
    'lk.source': where.source,
    'lk.line': String(where.line),
    'lk.ingested-at': new Date().toISOString(),
    'lk.original-bytes': String(originalBytes),
  };
  if (rejection.field !== undefined) headers['lk.field'] = rejection.field;
  if (rejection.expected !== undefined) headers['lk.expected'] = rejection.expected;
  if (rejection.got !== undefined) headers['lk.got'] = rejection.got;
  return {
    key: `${where.source}:${where.line}`,
    value: raw.length > MAX_DEAD_LETTER_BYTES ? raw.subarray(0, MAX_DEAD_LETTER_BYTES) : raw,
    headers,
  };
}

export interface DeadLetter {
  reason: string;
  message: string;
  field?: string;
  source: string;
  line: number;
  ingestedAt: string;
  originalBytes: number;
  raw: Buffer;
}

export function readDeadLetter(record: LogRecord): DeadLetter {
  const h = record.headers;
  return {
    reason: h['lk.reason'] ?? 'unknown',
    message: h['lk.message'] ?? '',
    ...(h['lk.field'] !== undefined ? { field: h['lk.field'] } : {}),
    source: h['lk.source'] ?? '',
    line: Number(h['lk.line'] ?? 0),
    ingestedAt: h['lk.ingested-at'] ?? '',
    originalBytes: Number(h['lk.original-bytes'] ?? record.value?.length ?? 0),
    raw: record.value ?? Buffer.alloc(0),
  };
}
