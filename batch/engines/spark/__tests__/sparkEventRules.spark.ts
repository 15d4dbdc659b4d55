/**
 * The Spark twins of the event rules of an `event:` section (services/metrics/sparkSql.ts:
 * `sparkEventTimeSql` in every time format, `sparkIdentifierSql`, `sparkIdTextOfStringSql`,
 * `sparkIdTextOfBytesSql`, `sparkIdHashSql`) against the JavaScript the speed layer runs
 * (fieldSemantics.ts `eventTimeOf`, `identifierText`, `idText`, `idTextOfString`;
 * services/log/partitioner.ts `idHash`), on generated values, in one Spark session: the
 * differential test draws one event: section per seed, this test every format at once. Values:
 * ISO date-times in every accepted spelling and near every rule's edge (zones, fractions of up to
 * nine digits, 24:00:00, leap days, years 0000-0099, invalid dates), epoch numbers in seconds,
 * milliseconds and microseconds written as numbers or strings (fractions, exponents, negatives,
 * beyond 2^53, beyond the range), record keys of any bytes (invalid UTF-8, `\x` prefixes).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  JsonNumber,
  MAX_EVENT_TIME_MS,
  TIME_FORMATS,
  eventTimeOf,
  identifierText,
  idText,
  idTextOfString,
  type FieldValue,
  type TimeFormat,
} from '../../../../services/metrics/fieldSemantics.ts';
import {
  sparkEventTimeSql,
  sparkIdHashSql,
  sparkIdentifierSql,
  sparkIdTextOfBytesSql,
  sparkIdTextOfStringSql,
  sparkQuote,
} from '../../../../services/metrics/sparkSql.ts';
import { idHash } from '../../../../services/log/partitioner.ts';
import { tempDir } from '../../../../test/helpers.ts';
import { ensureSpark } from '../sparkInstall.ts';
import { pick, seeded, type Rand } from './sparkTestKit.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? Date.now() % 1_000_000_007);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run --config vitest.spark.config.ts batch/engines/spark/__tests__/sparkEventRules.spark.ts`;

const digits = (r: Rand, n: number): string => Array.from({ length: n }, () => String(Math.floor(r() * 10))).join('');
const two = (n: number) => String(n).padStart(2, '0');

/** An ISO-8601-looking text: valid ones in every spelling, and ones just outside a rule. */
function isoText(r: Rand): string {
  const y = pick(r, ['2026', '2024', '2000', '1900', '0000', '0050', '0099', '0100', '1970', '1969', '9999', digits(r, 4)]);
  const mo = two(pick(r, [1, 2, 2, 12, 4, 13, 0, 1 + Math.floor(r() * 12)]));
  const d = two(pick(r, [1, 28, 29, 30, 31, 0, 32, 1 + Math.floor(r() * 31)]));
  const h = two(pick(r, [0, 23, 24, 12, Math.floor(r() * 25)]));
  const mi = two(pick(r, [0, 59, 60, Math.floor(r() * 60)]));
  const se = two(pick(r, [0, 59, 60, Math.floor(r() * 60)]));
  const frac = pick(r, ['', '', `.${digits(r, 1 + Math.floor(r() * 9))}`, '.000', '.0000000001', '.']);
  const zone = pick(r, ['Z', 'Z', '+00:00', '-05:30', '+0530', '+23:59', '+24:00', '-00:60', '+5:30', 'z', '', ' Z']);
  const sep = pick(r, ['T', 'T', ' ', 't']);
  const text = `${y}-${mo}-${d}${sep}${h}:${mi}:${se}${frac}${zone}`;
  return r() < 0.05 ? pick(r, [`${text}\n`, ` ${text}`, text.slice(0, -1)]) : text;
}

/** A JSON number text for an epoch value (or a string holding one, or not quite one). */
function epochText(r: Rand): string {
  const ms = 1767225600000 + Math.floor((r() - 0.5) * 4e10);
  const sign = r() < 0.1 ? '-' : '';
  return (
    sign +
    pick(r, [
      String(ms),
      String(Math.floor(ms / 1000)),
      `${Math.floor(ms / 1000)}.${digits(r, 1 + Math.floor(r() * 6))}`,
      `${ms}${digits(r, 3)}`,
      `${ms}${digits(r, 3)}.${digits(r, 3)}`,
      `${(ms / 1000).toFixed(3)}e${pick(r, ['0', '3', '-3', '+2'])}`,
      `${ms}E-3`,
      '0',
      '0.0',
      '1e-9',
      `0.${digits(r, 5)}`,
      `1${digits(r, 16 + Math.floor(r() * 4))}`,
      '8640000000000000',
      '8640000000000001',
      '8.64e15',
      '1e16',
      '1e1234567890123456',
      '12345678901234567890e-4',
      String(ms / 7),
    ])
  );
}

/** A field value as the rules read it: its kind and text (a string's text, a number's source). */
type Value = { kind: 's' | 'n'; text: string };

function timeValue(r: Rand): Value {
  const x = r();
  if (x < 0.4) return { kind: 's', text: isoText(r) };
  // A number's text as the validator passes it: JSON number text.
  if (x < 0.7) return { kind: 'n', text: epochText(r) };
  const t = epochText(r);
  return { kind: 's', text: r() < 0.1 ? pick(r, [` ${t}`, `+${t}`, `${t} `, `0x1F`, '']) : t };
}

function jsValue(v: Value): FieldValue {
  return v.kind === 's' ? v.text : new JsonNumber(v.text);
}

/** The JavaScript's event time, as the decoders check it: in range, else none. */
function jsTime(v: Value, format: TimeFormat): number | null {
  const t = eventTimeOf(jsValue(v), format);
  return Number.isFinite(t) && Math.abs(t) <= MAX_EVENT_TIME_MS ? t : null;
}

const ID_PIECES = ['a', 'é', '中', '😀', ' ', '\\x', '\\', 'x', '1', '\u00a0', '\u2028', '\t'];

function idValue(r: Rand): Value {
  if (r() < 0.4) return { kind: 'n', text: pick(r, ['1000', '1e3', '-0', '7.50', '9007199254740993', '1.5e-7', '0.1']) };
  return { kind: 's', text: Array.from({ length: Math.floor(r() * 4) }, () => pick(r, ID_PIECES)).join('') };
}

function keyBytes(r: Rand): Buffer {
  const x = r();
  if (x < 0.3) return Buffer.from(Array.from({ length: 1 + Math.floor(r() * 9) }, () => Math.floor(r() * 256)));
  if (x < 0.4)
    return Buffer.from(
      pick(r, [
        [0xc3, 0x28],
        [0xed, 0xa0, 0x80],
        [0xc0, 0xaf],
        [0x5c, 0x78, 0x41],
        [0xf4, 0x90, 0x80, 0x80],
      ]),
    );
  return Buffer.from(Array.from({ length: 1 + Math.floor(r() * 12) }, () => pick(r, ID_PIECES)).join(''), 'utf8');
}

/** Runs one Spark SQL query in a local session and returns its rows (JSON objects). */
async function sparkRows(sql: string, dir: string): Promise<Record<string, unknown>[]> {
  const install = ensureSpark();
  const script = join(dir, 'rules.py');
  writeFileSync(
    script,
    `import json, sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
  .config("spark.sql.ansi.enabled", "false").config("spark.sql.caseSensitive", "true").config("spark.sql.session.timeZone", "UTC")
  .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
sql = open(sys.argv[1], encoding="utf-8").read()
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for row in spark.sql(sql).toLocalIterator():
        out.write(json.dumps(row.asDict()) + "\\n")
spark.stop()
`,
  );
  writeFileSync(join(dir, 'query.sql'), sql);
  // Not spawnSync: the test's worker must keep answering vitest while Spark runs.
  const child = spawn(install.python, [script, join(dir, 'query.sql'), join(dir, 'rows.jsonl')], {
    env: { ...process.env, JAVA_HOME: install.javaHome, PYSPARK_PYTHON: install.python, SPARK_LOCAL_IP: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-4000)));
  const code = await new Promise<number | null>((res, rej) => {
    child.on('error', rej);
    child.on('close', res);
  });
  if (code !== 0) throw new Error(`the Spark session failed (${code}): ${stderr}`);
  return readFileSync(join(dir, 'rows.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('the Spark twins of the event rules agree with the JavaScript', () => {
  const dir = tempDir('lk-spark-rules-');
  afterAll(() => dir.remove());

  it(`event times in every format, ids and record keys (seed ${SEED})`, async () => {
    console.log(`spark event rules: seed ${SEED}; ${rerun}`);
    const r = seeded(SEED);
    const times = Array.from({ length: 1500 }, () => timeValue(r));
    const ids = Array.from({ length: 400 }, () => idValue(r));
    const keys = Array.from({ length: 400 }, () => keyBytes(r));
    const field = { kind: 'k', text: 't' };
    const timeColumns = TIME_FORMATS.map((f) => `${sparkEventTimeSql(field, f)} AS ${f.replace('-', '_')}`).join(', ');
    const timeRows = times.map((v, i) => `(${i}, '${v.kind}', ${sparkQuote(v.text)})`).join(', ');
    const idRows = ids.map((v, i) => `(${i}, '${v.kind}', ${sparkQuote(v.text)})`).join(', ');
    const keyRows = keys.map((b, i) => `(${i}, unhex('${b.toString('hex')}'))`).join(', ');
    const identifier = sparkIdentifierSql(field);
    const sql = `
      SELECT 'time' AS what, i, ${timeColumns}, CAST(NULL AS STRING) AS id, CAST(NULL AS STRING) AS id_text, CAST(NULL AS INT) AS hash
        FROM VALUES ${timeRows} AS v(i, k, t)
      UNION ALL
      SELECT 'id', i, NULL, NULL, NULL, NULL, NULL, lk_id, CASE WHEN lk_id IS NOT NULL THEN ${sparkIdTextOfStringSql('lk_id')} END,
          CASE WHEN lk_id IS NOT NULL THEN ${sparkIdHashSql(`encode(lk_id, 'UTF-8')`)} END
        FROM (SELECT i, ${identifier} AS lk_id FROM VALUES ${idRows} AS v(i, k, t))
      UNION ALL
      SELECT 'key', i, NULL, NULL, NULL, NULL, NULL, NULL, ${sparkIdTextOfBytesSql('b')}, ${sparkIdHashSql('b')}
        FROM VALUES ${keyRows} AS v(i, b)`;
    const rows = await sparkRows(sql, dir.path);
    expect(rows.length, rerun).toBe(times.length + ids.length + keys.length);
    let compared = 0;
    for (const row of rows) {
      const i = Number(row.i);
      if (row.what === 'time') {
        const v = times[i]!;
        for (const f of TIME_FORMATS) {
          const want = jsTime(v, f);
          const got = row[f.replace('-', '_')] ?? null;
          expect(got === null ? null : Number(got), `${f} of ${v.kind} ${JSON.stringify(v.text)}; ${rerun}`).toBe(want);
          compared++;
        }
      } else if (row.what === 'id') {
        const v = ids[i]!;
        const want = identifierText(jsValue(v)) ?? null;
        expect(row.id ?? null, `identifier of ${v.kind} ${JSON.stringify(v.text)}; ${rerun}`).toBe(want);
        if (want !== null) {
          expect(row.id_text, `idText of ${JSON.stringify(want)}; ${rerun}`).toBe(idTextOfString(want));
          expect(row.hash, `idHash of ${JSON.stringify(want)}; ${rerun}`).toBe(idHash(Buffer.from(want, 'utf8')));
        }
        compared++;
      } else {
        const b = keys[i]!;
        expect(row.id_text, `idText of key ${b.toString('hex')}; ${rerun}`).toBe(idText(b));
        expect(row.hash, `idHash of key ${b.toString('hex')}; ${rerun}`).toBe(idHash(b));
        compared++;
      }
    }
    const valid = times.filter((v) => TIME_FORMATS.some((f) => jsTime(v, f) !== null)).length;
    console.log(
      `spark event rules: ${compared} results equal (${times.length} times x ${TIME_FORMATS.length} formats, ${valid} a time in some format; ${ids.length} ids, ${keys.length} keys)`,
    );
    // The generator reaches both answers of every rule.
    expect(valid).toBeGreaterThan(times.length / 4);
    expect(valid).toBeLessThan(times.length);
  });
});
