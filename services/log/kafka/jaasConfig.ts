/**
 * `sasl.jaas.config`, as Kafka's client reads it (org.apache.kafka.common.security.JaasConfig):
 * exactly one login module, `<LoginModuleClass> <flag> [name=value ...];`, where the flag is
 * required, requisite, sufficient or optional, and a value is a word or a quoted string ("..." or
 * '...', with backslash escapes); `//` and `/* *\/` comments are skipped. For example
 *
 *   org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3cr=t";
 *
 * Errors say what is wrong and where in the text, never the text itself: it holds a password.
 */
import { Secret } from '../../config/secret.ts';

export const PLAIN_LOGIN_MODULE = 'org.apache.kafka.common.security.plain.PlainLoginModule';
export const SCRAM_LOGIN_MODULE = 'org.apache.kafka.common.security.scram.ScramLoginModule';

const FLAGS = ['required', 'requisite', 'sufficient', 'optional'];

export interface JaasLoginModule {
  loginModule: string;
  flag: string;
  /** The module's options; values may be secrets, so each is a Secret. */
  options: Map<string, Secret>;
}

type Token = { kind: 'word' | 'quoted'; text: string } | { kind: '=' | ';' };

/** Thrown with a message fit for the user (no part of the value). */
export class JaasSyntaxError extends Error {
  override name = 'JaasSyntaxError';
}

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (text.startsWith('//', i)) {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (text.startsWith('/*', i)) {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw new JaasSyntaxError('an unterminated /* comment');
      i = end + 2;
    } else if (c === '=' || c === ';') {
      tokens.push({ kind: c });
      i++;
    } else if (c === '"' || c === "'") {
      let value = '';
      let j = i + 1;
      for (; j < text.length && text[j] !== c; j++) {
        if (text[j] === '\\' && j + 1 < text.length) {
          j++;
          value += ESCAPES[text[j]!] ?? text[j];
        } else value += text[j];
      }
      if (j >= text.length) throw new JaasSyntaxError(`an unterminated quoted value (token ${tokens.length + 1})`);
      tokens.push({ kind: 'quoted', text: value });
      i = j + 1;
    } else {
      let j = i;
      while (j < text.length && !/[\s=;"']/.test(text[j]!)) j++;
      tokens.push({ kind: 'word', text: text.slice(i, j) });
      i = j;
    }
  }
  return tokens;
}

/** Parses a `sasl.jaas.config` value holding exactly one login module. */
export function parseJaasConfig(text: string): JaasLoginModule {
  const tokens = tokenize(text);
  let at = 0;
  const next = (): Token | undefined => tokens[at++];
  const module = next();
  if (module?.kind !== 'word') throw new JaasSyntaxError('expected a login module class first');
  const flag = next();
  if (flag?.kind !== 'word' || !FLAGS.includes(flag.text.toLowerCase())) {
    throw new JaasSyntaxError(`expected a control flag (${FLAGS.join(', ')}) after the login module class`);
  }
  const options = new Map<string, Secret>();
  for (;;) {
    const t = next();
    if (t === undefined) throw new JaasSyntaxError('the login module must end with ";"');
    if (t.kind === ';') break;
    if (t.kind !== 'word') throw new JaasSyntaxError(`expected an option name (token ${at})`);
    if (next()?.kind !== '=') throw new JaasSyntaxError(`expected "=" after option ${t.text}`);
    const value = next();
    if (value?.kind !== 'word' && value?.kind !== 'quoted') throw new JaasSyntaxError(`expected a value for option ${t.text}`);
    options.set(t.text, new Secret(value.text));
  }
  if (at < tokens.length) {
    throw new JaasSyntaxError('holds more than one login module (Kafka clients take exactly one)');
  }
  return { loginModule: module.text, flag: flag.text.toLowerCase(), options };
}
