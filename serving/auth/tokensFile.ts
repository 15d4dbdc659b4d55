/**
 * The tokens file (`lk serve --tokens-file tokens.yaml`): bearer tokens stored hashed, each with a
 * role and a name (who, in the audit lines). YAML or JSON:
 *
 *   tokens:
 *     - name: alice
 *       role: admin
 *       hash: sha256:4c1b...            # hex SHA-256 of the token
 *     - name: grafana
 *       role: reader
 *       hash: scrypt:16384:8:1:<salt, base64>:<key, base64>
 *
 * `sha256:` suits random tokens (`openssl rand -hex 32`): a token of 128 bits or more cannot be
 * guessed from its hash, and checking it costs a microsecond. `scrypt:` suits tokens a person
 * chose: checking one costs tens of milliseconds (on libuv's thread pool, not the event loop),
 * once per token and file version (successes are cached by the token's SHA-256; failures too, so
 * that a wrong token sent again costs nothing more).
 *
 * The file is validated whole (names and hashes unique, formats, roles); a file that fails keeps
 * the previous set (serving/watchedFile.ts).
 */
import { createHash, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, errorMessage } from '../../services/errors.ts';
import { ROLES, type Principal } from './roles.ts';

const SHA256 = /^sha256:([0-9a-f]{64})$/;
const SCRYPT = /^scrypt:(\d+):(\d+):(\d+):([A-Za-z0-9+/]+={0,2}):([A-Za-z0-9+/]+={0,2})$/;
/** scrypt parameters a file may ask for: enough for any sensible cost, bounded so that a file cannot make a check take seconds. */
const SCRYPT_MAX_N = 2 ** 20;
const SCRYPT_MAX_MEM = 256 * 1024 * 1024;

const entrySchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[\w.@+-]+$/, 'must be letters, digits and . _ @ + -'),
    role: z.enum(ROLES),
    hash: z.string().refine((h) => SHA256.test(h) || scryptParams(h) !== undefined, {
      message: 'must be sha256:<64 hex digits> or scrypt:<N>:<r>:<p>:<salt base64>:<key base64> (N a power of two)',
    }),
  })
  .strict();

const fileSchema = z.object({ tokens: z.array(entrySchema) }).strict();

export type TokenEntry = z.infer<typeof entrySchema>;

interface ScryptParams {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function scryptParams(hash: string): ScryptParams | undefined {
  const m = SCRYPT.exec(hash);
  if (!m) return undefined;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const salt = Buffer.from(m[4]!, 'base64');
  const key = Buffer.from(m[5]!, 'base64');
  const powerOfTwo = N > 1 && (N & (N - 1)) === 0;
  if (!powerOfTwo || N > SCRYPT_MAX_N || r < 1 || r > 32 || p < 1 || p > 16 || 128 * N * r > SCRYPT_MAX_MEM) return undefined;
  if (salt.length < 8 || key.length < 16 || key.length > 64) return undefined;
  return { N, r, p, salt, key };
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The file's entry line for a token (what `lk serve`'s docs tell users to write). */
export function sha256Entry(token: string): string {
  return `sha256:${sha256Hex(token)}`;
}

/** An scrypt entry for a token (tests, and users who keep tokens people chose). */
export function scryptEntry(token: string, salt: Buffer, N = 16384, r = 8, p = 1): Promise<string> {
  return new Promise((resolve, reject) =>
    scryptCallback(token, salt, 32, { N, r, p, maxmem: SCRYPT_MAX_MEM }, (err, key) =>
      err ? reject(err) : resolve(`scrypt:${N}:${r}:${p}:${salt.toString('base64')}:${key.toString('base64')}`),
    ),
  );
}

/** Parses and validates a tokens file's text; throws a ConfigError saying what is wrong and where. */
export function parseTokensFile(text: string, path: string): TokenEntry[] {
  let json: unknown;
  try {
    json = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`tokens file ${path} is neither YAML nor JSON: ${errorMessage(err)}`);
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`tokens file ${path}: ${issue.path.join('.') || '(root)'} ${issue.message}`);
  }
  const names = new Set<string>();
  const hashes = new Set<string>();
  for (const [i, e] of parsed.data.tokens.entries()) {
    if (names.has(e.name)) throw new ConfigError(`tokens file ${path}: tokens.${i}.name "${e.name}" appears twice`);
    if (hashes.has(e.hash)) throw new ConfigError(`tokens file ${path}: tokens.${i}.hash appears twice (two names for one token)`);
    names.add(e.name);
    hashes.add(e.hash);
  }
  return parsed.data.tokens;
}

/** Bounded memo of checks, cleared when the file changes. */
const MEMO_LIMIT = 10_000;

/** One version of the tokens file, ready to recognise tokens. */
export class TokenSet {
  private readonly bySha256 = new Map<string, Principal>();
  private readonly scrypts: { principal: Principal; params: ScryptParams }[] = [];
  /** Token SHA-256 -> principal (undefined: known not to match any scrypt entry). */
  private readonly memo = new Map<string, Principal | undefined>();

  constructor(readonly entries: readonly TokenEntry[]) {
    for (const e of entries) {
      const principal: Principal = { name: e.name, role: e.role, via: 'tokens-file' };
      const sha = SHA256.exec(e.hash);
      if (sha) this.bySha256.set(sha[1]!, principal);
      else this.scrypts.push({ principal, params: scryptParams(e.hash)! });
    }
  }

  get size(): number {
    return this.entries.length;
  }

  /** The principal a token stands for, or undefined. */
  async lookup(token: string): Promise<Principal | undefined> {
    const digest = sha256Hex(token);
    const direct = this.bySha256.get(digest);
    if (direct) return direct;
    if (this.scrypts.length === 0) return undefined;
    if (this.memo.has(digest)) return this.memo.get(digest);
    let found: Principal | undefined;
    for (const { principal, params } of this.scrypts) {
      const key = await new Promise<Buffer>((resolve, reject) =>
        scryptCallback(
          token,
          params.salt,
          params.key.length,
          { N: params.N, r: params.r, p: params.p, maxmem: SCRYPT_MAX_MEM },
          (err, k) => (err ? reject(err) : resolve(k)),
        ),
      );
      if (timingSafeEqual(key, params.key)) {
        found = principal;
        break;
      }
    }
    if (this.memo.size >= MEMO_LIMIT) this.memo.delete(this.memo.keys().next().value!);
    this.memo.set(digest, found);
    return found;
  }
}
