/**
 * Seeded generators of records in shapes that are not ours, for the differential test of the
 * event mapping (fieldSemantics.differential.spec.ts) and the path scanner's test
 * (services/events/__tests__/pathScanner.spec.ts): mappings (paths, `$key`, `$timestamp`, every
 * time format, the flat model), metric definitions over the mapping's paths, and records that
 * place, omit, null, nest or misplace the values those paths read, with decoys (the same names
 * elsewhere, arrays of objects), escapes, odd whitespace, record keys that are null, empty, UTF-8
 * or not, and record timestamps at their edges.
 */
import {
  FLAT_EVENT_MAPPING,
  RECORD_KEY,
  RECORD_TIMESTAMP,
  TIME_FORMATS,
  canonicalNumberText,
  formatFieldPath,
  type EventMapping,
  type FieldCondition,
  type FilterValue,
  type TimeFormat,
} from '../fieldSemantics.ts';
import type { MetricDefinition } from '../definitions.ts';

export type Rand = () => number;
export const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const digits = (r: Rand, n: number, noLeadingZero = false): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += String(i === 0 && noLeadingZero ? 1 + Math.floor(r() * 9) : Math.floor(r() * 10));
  return s;
};

// ---------------------------------------------------------------- JSON values as source text

/** JSON number text of every form: integers of any length, fractions, exponents, edges. */
export function numberText(r: Rand): string {
  const sign = r() < 0.3 ? '-' : '';
  switch (Math.floor(r() * 6)) {
    case 0:
      return sign + (r() < 0.1 ? '0' : digits(r, 1 + Math.floor(r() * 30), true));
    case 1:
      return `${sign}${r() < 0.4 ? '0' : digits(r, 1 + Math.floor(r() * 12), true)}.${digits(r, 1 + Math.floor(r() * 20))}`;
    case 2: {
      const mantissa =
        r() < 0.5 ? digits(r, 1 + Math.floor(r() * 6), true) : `${digits(r, 1, true)}.${digits(r, 1 + Math.floor(r() * 16))}`;
      return `${sign}${mantissa}${pick(r, ['e', 'E'])}${pick(r, ['', '+', '-'])}${r() < 0.2 ? '00' : ''}${Math.floor(r() * 40)}`;
    }
    case 3:
      return String((r() - 0.5) * 10 ** Math.floor(r() * 40 - 20));
    case 4:
      return sign + ((r() + 0.01) * 10 ** Math.floor(r() * 30 - 10)).toPrecision(15 + Math.floor(r() * 3));
    default:
      return pick(r, [
        '0',
        '-0',
        '0.0',
        '1e2',
        '100',
        '100.0',
        '9007199254740993',
        '18446744073709551616',
        '1e400',
        '5e-324',
        '0.1',
        '1.50',
      ]);
  }
}

const ESCAPES = ['\\"', '\\\\', '\\/', '\\n', '\\t', '\\u00e9', '\\u0041', '\\ud83d\\ude00', '\\u0000', '\\u001f'];
const RAW_UNICODE = ['é', '中', '😀', 'Ω', '\u00a0', '\u2028'];

/** JSON string text: plain, with escapes, Unicode, blanks (JavaScript's trim set), `\x` prefixes. */
export function stringText(r: Rand): string {
  const k = r();
  if (k < 0.08) return `"${pick(r, ['', ' ', '  ', '\\t', '\\n', '\u00a0', '\u3000 ', '\\ufeff', '\u2028', '\u180e'])}"`;
  if (k < 0.12) return `"\\\\x${pick(r, ['', 'ab', 'zz', '00'])}"`;
  const parts: string[] = [];
  const n = 1 + Math.floor(r() * 6);
  for (let i = 0; i < n; i++) {
    const kind = r();
    if (kind < 0.6) parts.push(pick(r, ['a', 'b', 'user-', '1', '0.5', 'true', ' ', 'x y', "it's", '#', '-', 'click', 'view']));
    else if (kind < 0.8) parts.push(pick(r, ESCAPES));
    else parts.push(pick(r, RAW_UNICODE));
  }
  return `"${parts.join('')}"`;
}

/** A field's value: a number, a string, a boolean, null, an object or an array. */
export function valueText(r: Rand): string {
  const k = r();
  if (k < 0.4) return numberText(r);
  if (k < 0.75) return stringText(r);
  if (k < 0.83) return pick(r, ['true', 'false']);
  if (k < 0.9) return 'null';
  if (k < 0.95) return pick(r, ['{}', '{"x":1}', '{"a":{"b":2}}']);
  return pick(r, ['[]', '[1,2]', '[{"a":1}]']);
}

/** An ISO-8601 date-time, valid or at the grammar's and the calendar's edges. */
export function isoText(r: Rand): string {
  const y = pick(r, ['2026', '2024', '1969', '1970', '0000', '0004', '0099', '1900', '2000', '9999']);
  const mo = pick(r, ['01', '02', '03', '04', '12', '00', '13']);
  const d = pick(r, ['01', '15', '28', '29', '30', '31', '00', '32']);
  const h = pick(r, ['00', '10', '23', '24', '25']);
  const mi = pick(r, ['00', '30', '59', '60']);
  const s = pick(r, ['00', '07', '59', '60']);
  const fraction = pick(r, ['', '', '.0', '.5', '.123', '.1234567', '.999999999', '.000', '.0001', '.']);
  const zone = pick(r, ['Z', 'Z', '+00:00', '-00:00', '+05:30', '+0530', '-23:59', '+24:00', '+05:60', '', 'z']);
  return `${y}-${mo}-${d}${pick(r, ['T', 'T', ' ', 't'])}${h}:${mi}:${s}${fraction}${zone}`;
}

/** A time value for `format`: mostly in it, at its edges, sometimes of another kind. */
export function timeText(r: Rand, format: TimeFormat): string {
  const k = r();
  if (k < 0.1) return valueText(r);
  if (k < 0.35) return `"${isoText(r)}"`;
  const epoch = (unitDigits: number) => {
    const base = 1_767_225_600 * 10 ** (unitDigits - 10);
    const v = Math.floor(base + (r() - 0.5) * 10 ** (unitDigits - 2));
    const sign = r() < 0.1 ? '-' : '';
    const fraction = r() < 0.3 ? `.${digits(r, 1 + Math.floor(r() * 8))}` : '';
    return `${sign}${v}${fraction}`;
  };
  const n =
    r() < 0.15
      ? pick(r, [
          '0',
          '-0',
          '-1',
          '0.5',
          '-0.5',
          '-0.0001',
          '1e15',
          '8.64e15',
          '8640000000000000',
          '8640000000000001',
          '-8640000000000000',
          '1e400',
          '1.5e3',
          '1E+3',
          '9007199254740993',
        ])
      : format === 'epoch-s'
        ? epoch(10)
        : format === 'epoch-us'
          ? epoch(16)
          : epoch(13);
  if (r() < 0.25) return `"${r() < 0.1 ? pick(r, [' ', '+', '0']) : ''}${n}"`;
  return n;
}

/** A record key: none, empty, UTF-8 text, text starting with `\x`, or bytes that are not UTF-8. */
export function recordKey(r: Rand): Buffer | null {
  const k = r();
  if (k < 0.1) return null;
  if (k < 0.15) return Buffer.alloc(0);
  if (k < 0.55) return Buffer.from(`key-${Math.floor(r() * 50)}${pick(r, ['', 'é', '中', ' '])}`);
  if (k < 0.62) return Buffer.from(`\\x${pick(r, ['', '00', 'ff', 'k'])}`);
  if (k < 0.7) return Buffer.from(pick(r, [[0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff], [0x00], [0xc3]]));
  return Buffer.from(Array.from({ length: 1 + Math.floor(r() * 12) }, () => Math.floor(r() * 256)));
}

/** A record timestamp: Kafka's -1 (none), 0, a time, the largest event time and beyond it. */
export function recordTimestamp(r: Rand): number {
  const k = r();
  if (k < 0.1) return -1;
  if (k < 0.15) return pick(r, [0, 1, 8.64e15, 8.64e15 + 1]);
  return 1_767_225_600_000 + Math.floor((r() - 0.5) * 1e10);
}

// ---------------------------------------------------------------- mappings and metric definitions

/** Names paths are built of: bare ones, and ones that must be quoted (a dot, a space). */
const NAMES = ['a', 'b', 'meta', 'payload', 'id', 'ts', 'type', 'user.id', 'x y', 'é', '$oid', '@timestamp', 'k', 'v', '0', '-', '_'];

export function pathOf(r: Rand, maxDepth = 3): string[] {
  return Array.from({ length: 1 + Math.floor(r() * maxDepth) }, () => pick(r, NAMES));
}

export interface GeneratedShape {
  mapping: EventMapping;
  metrics: MetricDefinition[];
  /** Every path a record of the shape may carry (the mapping's and the metrics'), with their names. */
  paths: { text: string; names: string[]; role: 'id' | 'time' | 'type' | 'field' }[];
}

/**
 * A mapping and one or two metrics over its paths. The index cycles through the kinds, so that a
 * few shapes cover them all: each time format with a path, `$timestamp`, the flat model; the id
 * in the record key every third shape.
 */
export function generateShape(r: Rand, index: number): GeneratedShape {
  const kind = index % 7;
  const flat = kind === 6;
  const paths: GeneratedShape['paths'] = [];
  const path = (role: GeneratedShape['paths'][number]['role'], names?: string[]) => {
    const n = names ?? (flat ? [pick(r, ['k', 'v', 'a', 'b', 'user.id', '_'])] : pathOf(r));
    const text = flat ? n[0]! : formatFieldPath(n);
    paths.push({ text, names: n, role });
    return text;
  };
  let mapping: EventMapping;
  if (flat) {
    mapping = FLAT_EVENT_MAPPING;
    paths.push(
      { text: 'id', names: ['id'], role: 'id' },
      { text: 'ts', names: ['ts'], role: 'time' },
      { text: 'type', names: ['type'], role: 'type' },
    );
  } else {
    const id = index % 3 === 0 ? RECORD_KEY : path('id');
    const time = kind === 5 ? RECORD_TIMESTAMP : path('time');
    const timeFormat = time === RECORD_TIMESTAMP ? 'epoch-ms' : TIME_FORMATS[kind]!;
    const type = r() < 0.5 ? path('type') : undefined;
    mapping = { flat: false, id, time, timeFormat, ...(type !== undefined ? { type } : {}) };
  }
  const metrics: MetricDefinition[] = [];
  const count = 1 + Math.floor(r() * 2);
  for (let m = 0; m < count; m++) {
    const filter: Record<string, FilterValue[]> = {};
    // Some metrics test only their key (so that composite keys and conditions meet matching events).
    const bare = r() < 0.3;
    const filters = bare ? 0 : Math.floor(r() * 3);
    for (let f = 0; f < filters; f++) {
      const field = r() < 0.3 && paths.length > 0 ? pick(r, paths).text : path('field');
      filter[field] = Array.from({ length: 1 + Math.floor(r() * 3) }, () => filterValue(r));
    }
    // Tests beside equality: not, numeric bounds, exists (also on fields with an equality test).
    const conditions: Record<string, FieldCondition> = {};
    const conditioned = bare ? 0 : Math.floor(r() * 3);
    for (let f = 0; f < conditioned; f++) {
      const field = r() < 0.3 && Object.keys(filter).length > 0 ? pick(r, Object.keys(filter)) : path('field');
      const c: { -readonly [K in keyof FieldCondition]: FieldCondition[K] } = {};
      if (r() < 0.4) c.not = Array.from({ length: 1 + Math.floor(r() * 2) }, () => filterValue(r));
      if (r() < 0.4) c[pick(r, ['gt', 'gte'] as const)] = boundValue(r);
      if (r() < 0.4) c[pick(r, ['lt', 'lte'] as const)] = boundValue(r);
      if (r() < 0.3 || Object.keys(c).length === 0) c.exists = r() < 0.7;
      conditions[field] = c;
    }
    const key = r() < 0.2 && paths.length > 0 ? pick(r, paths).text : path('field');
    // A composite key of two or three parts, sometimes.
    const keyParts = r() < (bare ? 0.6 : 0.2) ? [key, ...Array.from({ length: 1 + Math.floor(r() * 2) }, () => path('field'))] : undefined;
    const distinctParts = keyParts === undefined ? undefined : [...new Set(keyParts)];
    const value = r() < 0.6 ? path('field') : undefined;
    const distinct = r() < 0.5 ? path('field') : undefined;
    metrics.push({
      name: `m${index}_${m}`,
      filter,
      ...(Object.keys(conditions).length > 0 ? { conditions } : {}),
      ...(distinctParts !== undefined && distinctParts.length > 1
        ? { key: `[${distinctParts.join(', ')}]`, keyParts: distinctParts }
        : { key }),
      ...(value !== undefined ? { value } : {}),
      ...(distinct !== undefined ? { distinct } : {}),
      granularities: ['minute'],
      allowedLatenessMs: 0,
      ...(flat ? {} : { event: mapping }),
    });
  }
  return { mapping, metrics, paths };
}

/** A numeric bound of a generated condition: values records carry, and their neighbours. */
function boundValue(r: Rand): number {
  return pick(r, [0, 1, -1, 100, 1.5, -7, 0.1, 1e300, -1e-300, 9007199254740992, Math.round((r() - 0.5) * 2000) / 8]);
}

/** A filter's accepted value, of the kinds records carry (so that some match). */
function filterValue(r: Rand): FilterValue {
  const k = r();
  if (k < 0.35) return pick(r, ['a', 'click', 'view', '1', 'true', 'x y', 'é']);
  if (k < 0.55) return r() < 0.5;
  return { number: canonicalNumberText(pick(r, ['0', '1', '100', '1e2', '1.5', '-7', '9007199254740993', numberText(r)])) };
}

// ---------------------------------------------------------------- records

/** A JSON tree whose leaves are source text, serialized with chosen whitespace and name spellings. */
type Tree = { members: [string, Tree | string][] };

function place(tree: Tree, names: readonly string[], value: string, r: Rand): void {
  let node = tree;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const last = i === names.length - 1;
    const at = node.members.findIndex(([n]) => n === name);
    if (last) {
      if (at < 0) node.members.push([name, value]);
      else if (typeof node.members[at]![1] === 'string' && r() < 0.5) node.members[at]![1] = value;
      return;
    }
    if (at < 0) {
      // Sometimes the walk meets an array or a scalar instead of an object: the path is missing.
      const k = r();
      if (k < 0.06) {
        node.members.push([name, `[{"${names[i + 1]}":${value}}]`]);
        return;
      }
      if (k < 0.1) {
        node.members.push([name, pick(r, ['1', '"x"', 'null', 'true'])]);
        return;
      }
      const child: Tree = { members: [] };
      node.members.push([name, child]);
      node = child;
    } else {
      const existing = node.members[at]![1];
      if (typeof existing === 'string') return;
      node = existing;
    }
  }
}

function serialize(tree: Tree, r: Rand, ws: () => string): string {
  const members = tree.members.map(([name, v]) => {
    // Names are sometimes spelled with escapes (the same name to every reader).
    const spelled =
      r() < 0.05 ? `"${[...name].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(name);
    return `${ws()}${spelled}${ws()}:${ws()}${typeof v === 'string' ? v : serialize(v, r, ws)}${ws()}`;
  });
  return `{${members.join(',')}}`;
}

export interface GeneratedRecord {
  value: Buffer;
  key: Buffer | null;
  timestamp: number;
}

/**
 * A record of `shape`: each of its paths usually present with a value of its role (an id, a time
 * in the mapping's format, a field value), sometimes missing, null or of another kind; decoys (the
 * same names elsewhere, nested or in arrays); whitespace and name escapes; rarely a repeated name.
 */
export function generateRecord(r: Rand, shape: GeneratedShape): GeneratedRecord {
  const tree: Tree = { members: [] };
  const flat = shape.mapping.flat;
  const decoy = () => {
    const names = pathOf(r, 4);
    place(tree, r() < 0.5 ? ['decoy', ...names] : names, valueText(r), r);
  };
  if (r() < 0.5) decoy();
  for (const p of [...shape.paths].sort(() => r() - 0.5)) {
    if (r() < 0.08) continue;
    let v: string;
    if (p.role === 'time') v = timeText(r, shape.mapping.timeFormat);
    else if (p.role === 'id' || p.role === 'type') v = r() < 0.7 ? (r() < 0.75 ? stringText(r) : numberText(r)) : valueText(r);
    else v = valueText(r);
    if (flat && r() < 0.9 && (v === 'null' || v.startsWith('{') || v.startsWith('['))) v = stringText(r);
    place(tree, p.names, v, r);
  }
  if (r() < 0.3) decoy();
  if (flat && r() < 0.05) tree.members.push([pick(r, ['x y', '1abc', 'é']), '1']);
  if (r() < 0.02 && tree.members.length > 0) tree.members.push([tree.members[0]![0], '"again"']);
  const spaces = r() < 0.3 ? ['', ' ', '\t', '\n', '\r\n'] : [''];
  const text = serialize(tree, r, () => pick(r, spaces));
  return { value: Buffer.from(text), key: recordKey(r), timestamp: recordTimestamp(r) };
}
