/**
 * A value that must never be printed (a password, a private key's passphrase). It shows as
 * `[secret]` in strings, JSON, util.inspect and pino logs; only `reveal()` gives the value, at
 * the one place that hands it to the library that needs it.
 */
import { inspect } from 'node:util';

const REDACTED = '[secret]';

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
