/**
 * The Java `.properties` format, read the way `java.util.Properties.load(InputStream)` reads it,
 * so that one client properties file serves Kafka's own tools (`--command-config`,
 * `--consumer.config`) and `lk --kafka-config` alike:
 * - the bytes are ISO-8859-1 (Properties.load(InputStream)); other characters are written \uXXXX;
 * - a natural line ends at \n, \r or \r\n; a line whose first non-blank character is `#` or `!`
 *   is a comment, and so is a blank line;
 * - a logical line continues on the next natural line when it ends with an odd number of
 *   backslashes; the continuation's leading blanks are dropped (comments never continue);
 * - the key ends at the first unescaped `=`, `:` or blank; blanks, then one `=` or `:`, then
 *   blanks separate it from the value (`key=value`, `key: value`, `key value`);
 * - escapes in keys and values: \t \n \r \f, \uXXXX, and a backslash before any other character
 *   stands for that character (`\=`, `\:`, `\ `, `\\`, `\#`);
 * - a key given twice keeps its last value.
 * Blanks are space, tab and form feed, as in Java.
 */
import { ConfigError } from '../../errors.ts';

export interface PropertyEntry {
  value: string;
  /** 1-based line where the entry's logical line starts. */
  line: number;
}

const isBlank = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\f';

/**
 * The logical lines of `text`, each with the natural line it starts on: a port of the JDK's
 * `Properties.LineReader.readLine` (java.base, java/util/Properties.java), whose corners the
 * differential test against Java holds us to. Among them: a comment is recognised wherever the
 * logical line is still empty, so also right after a continued line that held only a
 * backslash; a blank line ends a continuation; a logical line left empty yields no entry; a
 * backslash at the very end of the file is dropped.
 */
function logicalLines(text: string): { text: string; line: number }[] {
  const out: { text: string; line: number }[] = [];
  let i = 0;
  let natural = 1; // the natural line of text[i]
  let skipLF = false; // a \n right after a continued line's \r belongs to it (Java's skipLF)
  for (;;) {
    let buf = '';
    let start = natural;
    let skipWhiteSpace = true;
    let appendedLineBegin = false;
    let precedingBackslash = false;
    for (;;) {
      if (i >= text.length) {
        if (buf.length > 0) out.push({ text: precedingBackslash ? buf.slice(0, -1) : buf, line: start });
        return out;
      }
      const c = text[i++]!;
      const eol = c === '\n' || c === '\r';
      if (c === '\r' || (c === '\n' && text[i - 2] !== '\r')) natural++;
      if (skipLF) {
        skipLF = false;
        if (c === '\n') continue;
      }
      if (skipWhiteSpace) {
        if (isBlank(c)) continue;
        if (!appendedLineBegin && eol) continue;
        skipWhiteSpace = false;
        appendedLineBegin = false;
      }
      if (buf.length === 0 && (c === '#' || c === '!')) {
        // A comment: up to and with the next line break; never continued.
        while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
        if (i < text.length) {
          if (text[i] === '\r' || text[i - 1] !== '\r') natural++;
          i++;
        }
        skipWhiteSpace = true;
        continue;
      }
      if (!eol) {
        if (buf.length === 0) start = natural;
        buf += c;
        precedingBackslash = c === '\\' ? !precedingBackslash : false;
        continue;
      }
      if (buf.length === 0) {
        skipWhiteSpace = true;
        continue;
      }
      if (i >= text.length) {
        out.push({ text: precedingBackslash ? buf.slice(0, -1) : buf, line: start });
        return out;
      }
      if (precedingBackslash) {
        buf = buf.slice(0, -1);
        skipWhiteSpace = true;
        appendedLineBegin = true;
        precedingBackslash = false;
        if (c === '\r') skipLF = true;
        continue;
      }
      out.push({ text: buf, line: start });
      break;
    }
  }
}

/** Replaces the escapes of a key or value; `where` names the line for a malformed \uXXXX. */
function unescape(raw: string, where: string): string {
  if (!raw.includes('\\')) return raw;
  let out = '';
  for (let j = 0; j < raw.length; j++) {
    const c = raw[j]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = raw[++j];
    if (next === undefined) break;
    if (next === 'u') {
      const hex = raw.slice(j + 1, j + 5);
      if (!/^[0-9A-Fa-f]{4}$/.test(hex)) throw new ConfigError(`${where}: malformed \\uXXXX escape (four hexadecimal digits expected)`);
      out += String.fromCharCode(parseInt(hex, 16));
      j += 4;
    } else out += next === 't' ? '\t' : next === 'n' ? '\n' : next === 'r' ? '\r' : next === 'f' ? '\f' : next;
  }
  return out;
}

/**
 * Parses properties `text`. `source` names the file in errors (which give the line, never a
 * value: values may be secrets).
 */
export function parseJavaProperties(text: string, source: string): Map<string, PropertyEntry> {
  const entries = new Map<string, PropertyEntry>();
  for (const { text: l, line } of logicalLines(text)) {
    // The key ends at the first unescaped separator or blank.
    let k = 0;
    let escaped = false;
    for (; k < l.length; k++) {
      const c = l[k]!;
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '=' || c === ':' || isBlank(c)) break;
    }
    let v = k;
    while (isBlank(l[v])) v++;
    if (l[v] === '=' || l[v] === ':') v++;
    while (isBlank(l[v])) v++;
    const where = `${source}:${line}`;
    const key = unescape(l.slice(0, k), where);
    entries.set(key, { value: unescape(l.slice(v), where), line });
  }
  return entries;
}

/** Decodes a properties file's bytes as Properties.load(InputStream) does: ISO-8859-1. */
export function decodePropertiesFile(bytes: Buffer): string {
  return bytes.toString('latin1');
}
