/**
 * The client properties file is read exactly as Java reads it: `parseJavaProperties` against
 * `java.util.Properties.load(InputStream)` itself (the loader of Kafka's tools), on the same
 * bytes. Hand-written cases for every rule of the format, then generated files mixing separators,
 * blanks, comments, continuations, escapes (malformed \u ones too) and Latin-1 bytes. A file
 * that one side refuses must be refused by the other. A failure prints the seed and the file.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findJava } from '../../../scripts/kafka.mjs';
import { seededRandom } from '../../ingest/generator.ts';
import { decodePropertiesFile, parseJavaProperties } from '../kafka/javaProperties.ts';
import { tempDir } from '../../../test/helpers.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 1701);
const GENERATED = Number(process.env.LK_TEST_PROPS_FILES ?? 400);

const HAND_WRITTEN: Record<string, string> = {
  separators: 'a=1\nb:2\nc 3\nd\t=\t4\ne  :  5\nf=\ng\nh==x\ni::y\nj =: z\n',
  comments: '# c\n! c\n  # indented\na=1 # not a comment\n\n\t\nb=2\n',
  continuation: 'a=one \\\n    two \\\n\tthree\nb=x\\\\\nc=y\\\\\\\n  z\n# comment \\\nd=4\n',
  escapes: 'k\\=ey=v\\:al\\ ue\nsp\\ ace = x\\ty\\nz\\rw\\fq\ncolon\\:key:1\nuni=\\u0041\\u00e9\\u20ac\nother=\\q\\"\\#\\!\n',
  jaas: 'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n  username="alice" \\\n  password="p\\\\\\"w=:";\n',
  lineEndings: 'a=1\r\nb=2\rc=3\nd=4',
  trailingBackslashAtEnd: 'a=1\nb=2\\',
  latin1: 'caf\u00e9=cr\u00e8me\n',
  duplicates: 'a=1\na=2\n',
  malformedUnicode: 'a=\\u00g1\n',
  shortUnicode: 'a=\\u12',
};

/** A random properties file (characters below 0x100: written as Latin-1, as Java reads it). */
function generate(rand: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const pieces = [
    'a',
    'b',
    'key',
    'ssl.x',
    '1',
    ' ',
    '  ',
    '\t',
    '\f',
    '=',
    ':',
    '\\',
    '\\\\',
    '#',
    '!',
    '\\u0041',
    '\\u00',
    '\\t',
    '\\n',
    'é',
    '"',
    "'",
    ';',
  ];
  const lines: string[] = [];
  const count = 1 + Math.floor(rand() * 6);
  for (let i = 0; i < count; i++) {
    let line = '';
    const n = Math.floor(rand() * 10);
    for (let j = 0; j < n; j++) line += pick(pieces);
    if (rand() < 0.2) line += '\\';
    lines.push(line);
  }
  let text = '';
  for (const l of lines) text += l + pick(['\n', '\n', '\r\n', '\r']);
  return rand() < 0.2 ? text.slice(0, -1) : text;
}

/** java.util.Properties.load on every file of `dir`: per file, its entries (or ERROR), char codes in hex. */
const JAVA_DUMP = `
import java.io.*; import java.nio.file.*; import java.util.*;
public class PropsDump {
  static String hex(String s) { StringBuilder b = new StringBuilder(); for (char c : s.toCharArray()) b.append(String.format("%04x", (int) c)); return b.toString(); }
  public static void main(String[] a) throws Exception {
    File[] files = new File(a[0]).listFiles((d, n) -> n.endsWith(".properties")); Arrays.sort(files);
    StringBuilder out = new StringBuilder();
    for (File f : files) {
      out.append("FILE ").append(f.getName()).append('\\n');
      Properties p = new Properties();
      try (InputStream in = new FileInputStream(f)) { p.load(in); } catch (IllegalArgumentException e) { out.append("ERROR\\n"); continue; }
      TreeMap<String, String> sorted = new TreeMap<>(); for (String k : p.stringPropertyNames()) sorted.put(hex(k), hex(p.getProperty(k)));
      for (Map.Entry<String, String> e : sorted.entrySet()) out.append(e.getKey()).append(' ').append(e.getValue()).append('\\n');
    }
    System.out.print(out);
  }
}`;

const hex = (s: string): string => [...s].map((c) => c.charCodeAt(0).toString(16).padStart(4, '0')).join('');

function ours(bytes: Buffer, name: string): string[] {
  try {
    const entries = parseJavaProperties(decodePropertiesFile(bytes), name);
    return [...entries].map(([k, e]) => `${hex(k)} ${hex(e.value)}`).sort();
  } catch {
    return ['ERROR'];
  }
}

describe('Java properties: parseJavaProperties reads what java.util.Properties reads', () => {
  const dir = tempDir('lk-props-');
  afterAll(() => dir.remove());

  it(`agrees with Properties.load on ${Object.keys(HAND_WRITTEN).length} hand-written and ${GENERATED} generated files (seed ${SEED})`, () => {
    const rand = seededRandom(SEED);
    const files = new Map<string, Buffer>();
    for (const [name, text] of Object.entries(HAND_WRITTEN)) files.set(`hand-${name}.properties`, Buffer.from(text, 'latin1'));
    for (let i = 0; i < GENERATED; i++) files.set(`gen-${String(i).padStart(4, '0')}.properties`, Buffer.from(generate(rand), 'latin1'));
    for (const [name, bytes] of files) writeFileSync(join(dir.path, name), bytes);
    writeFileSync(join(dir.path, 'PropsDump.java'), JAVA_DUMP);

    const { java } = findJava();
    const r = spawnSync(java, ['-Xmx128m', join(dir.path, 'PropsDump.java'), dir.path], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const javaSays = new Map<string, string[]>();
    let current: string[] = [];
    for (const line of r.stdout.split('\n').filter(Boolean)) {
      if (line.startsWith('FILE ')) javaSays.set(line.slice(5), (current = []));
      else current.push(line);
    }
    expect([...javaSays.keys()].sort()).toEqual(
      readdirSync(dir.path)
        .filter((n) => n.endsWith('.properties'))
        .sort(),
    );

    const disagreements: string[] = [];
    for (const [name, bytes] of files) {
      const want = javaSays.get(name)!.sort();
      const got = ours(bytes, name);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        disagreements.push(`${name} ${JSON.stringify(bytes.toString('latin1'))}: java ${JSON.stringify(want)}, lk ${JSON.stringify(got)}`);
      }
    }
    expect(
      disagreements.slice(0, 5),
      `reproduce with LK_TEST_SEED=${SEED} npx vitest run services/log/__tests__/javaPropertiesMatchJava.spec.ts`,
    ).toEqual([]);
    // The hand-written files do cover what they are named after.
    expect(javaSays.get('hand-malformedUnicode.properties')).toEqual(['ERROR']);
    expect(ours(files.get('hand-escapes.properties')!, 'x')).toContain(`${hex('uni')} ${hex('Aé€')}`);
  });
});
