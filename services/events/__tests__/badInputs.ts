/** Every kind of bad input the platform must refuse, with its reason: shared by unit and end-to-end tests. */
import { DEFAULT_EVENT_LIMITS, validateEventLine, type RejectCode } from '../event.ts';

export const NOW = Date.UTC(2026, 10, 21, 12);
export const check = (line: string | Buffer) =>
  validateEventLine(typeof line === 'string' ? Buffer.from(line) : line, DEFAULT_EVENT_LIMITS, NOW);
export const base = { id: 'e1', type: 'click', ts: '2026-11-21T10:00:00Z' };
export const line = (extra: Record<string, unknown>, omit: string[] = []) => {
  const o: Record<string, unknown> = { ...base, ...extra };
  for (const k of omit) delete o[k];
  return JSON.stringify(o);
};

/** Every kind of bad input, with the reason and field it must be refused for. */
export const BAD_INPUTS: { name: string; raw: Buffer; code: RejectCode; field?: string }[] = [
  { name: 'invalid JSON', raw: Buffer.from('{"id": "a", "type": '), code: 'invalid_json' },
  { name: 'trailing garbage', raw: Buffer.from(`${line({})} x`), code: 'invalid_json' },
  { name: 'binary garbage', raw: Buffer.from([0x00, 0x01, 0xff, 0x7b]), code: 'binary_data' },
  { name: 'byte order mark', raw: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(line({}))]), code: 'byte_order_mark' },
  { name: 'empty line', raw: Buffer.from(''), code: 'empty_line' },
  { name: 'whitespace-only line', raw: Buffer.from('   \t '), code: 'empty_line' },
  {
    name: 'invalid UTF-8',
    raw: Buffer.concat([Buffer.from('{"id":"'), Buffer.from([0xc3, 0x28]), Buffer.from('","type":"a","ts":0}')]),
    code: 'invalid_utf8',
  },
  { name: 'top-level array', raw: Buffer.from('[1,2]'), code: 'not_an_object' },
  { name: 'top-level string', raw: Buffer.from('"hello"'), code: 'not_an_object' },
  { name: 'missing id', raw: Buffer.from(line({}, ['id'])), code: 'missing_field', field: 'id' },
  { name: 'empty id', raw: Buffer.from(line({ id: '' })), code: 'empty_value', field: 'id' },
  { name: 'blank id', raw: Buffer.from(line({ id: '   ' })), code: 'empty_value', field: 'id' },
  { name: 'numeric id', raw: Buffer.from(line({ id: 42 })), code: 'wrong_type', field: 'id' },
  { name: 'missing type', raw: Buffer.from(line({}, ['type'])), code: 'missing_field', field: 'type' },
  { name: 'boolean type', raw: Buffer.from(line({ type: true })), code: 'wrong_type', field: 'type' },
  { name: 'missing ts', raw: Buffer.from(line({}, ['ts'])), code: 'missing_field', field: 'ts' },
  { name: 'unparseable ts', raw: Buffer.from(line({ ts: 'yesterday' })), code: 'invalid_ts', field: 'ts' },
  { name: 'ts without zone', raw: Buffer.from(line({ ts: '2026-11-21T10:00:00' })), code: 'invalid_ts', field: 'ts' },
  { name: 'impossible date', raw: Buffer.from(line({ ts: '2026-02-30T10:00:00Z' })), code: 'invalid_ts', field: 'ts' },
  { name: 'fractional epoch ts', raw: Buffer.from(line({ ts: 1.5 })), code: 'invalid_ts', field: 'ts' },
  { name: 'ts far in the future', raw: Buffer.from(line({ ts: '2999-01-01T00:00:00Z' })), code: 'ts_out_of_range', field: 'ts' },
  { name: 'ts far in the past', raw: Buffer.from(line({ ts: 0 })), code: 'ts_out_of_range', field: 'ts' },
  { name: 'nested object', raw: Buffer.from(line({ geo: { lat: 1 } })), code: 'nested_value', field: 'geo' },
  { name: 'array attribute', raw: Buffer.from(line({ tags: ['a'] })), code: 'nested_value', field: 'tags' },
  { name: 'null attribute', raw: Buffer.from(line({ cost: null })), code: 'null_value', field: 'cost' },
  { name: 'invalid field name', raw: Buffer.from(line({ 'bad name': 1 })), code: 'invalid_field_name', field: 'bad name' },
  {
    name: 'duplicate field name',
    raw: Buffer.from('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00Z","type":"view"}'),
    code: 'duplicate_field',
    field: 'type',
  },
  {
    name: 'duplicate field name, escaped',
    raw: Buffer.from('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00Z","c\u0061t":1,"cat":2}'),
    code: 'duplicate_field',
    field: 'cat',
  },
  {
    name: 'lone high surrogate escape',
    raw: Buffer.from('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00Z","name":"ab\\ud800cd"}'),
    code: 'lone_surrogate',
    field: 'name',
  },
  {
    name: 'lone low surrogate escape',
    raw: Buffer.from('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00Z","name":"\\udc00"}'),
    code: 'lone_surrogate',
    field: 'name',
  },
  {
    name: 'exponent of more than 15 digits',
    raw: Buffer.from('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00Z","cost":1e1234567890123456}'),
    code: 'number_out_of_range',
    field: 'cost',
  },
  {
    name: 'too many fields',
    raw: Buffer.from(line(Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`f${i}`, i])))),
    code: 'too_many_fields',
  },
  { name: 'oversized event', raw: Buffer.from(line({ blob: 'x'.repeat(70 * 1024) })), code: 'too_large' },
];
