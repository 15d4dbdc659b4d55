/**
 * The object store on a local folder: object `a/b/c` is the file `<root>/a/b/c`.
 *
 * Writes keep services/storage/atomicFile.ts's durability rule: the content is made durable under
 * a temporary name in the same folder, then renamed (replace) or hard-linked (create-only: link(2)
 * fails when the name exists) into place, and the folder is fsynced. So an object is whole or
 * absent, also after a crash or a power loss.
 *
 * The ETag is the file's inode, size and modification time in nanoseconds: every write puts a new
 * file (a new inode) in place, so the tag changes with every replacement without hashing content.
 * `ifMatch` compares and swaps under a lock file beside the object (`<name>.cas-lock`, held for
 * the few milliseconds of a stat and a rename; fileLock.ts takes over the lock of a dead holder).
 * A local folder is one host's storage: hosts that share nothing use an S3 bucket instead.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { copyFile, link, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { InfrastructureError, errorMessage } from '../errors.ts';
import { fsyncDir } from './atomicFile.ts';
import { acquireLock, releaseLock } from './fileLock.ts';
import {
  checkKey,
  checkPrefix,
  isReservedName,
  joinKey,
  type ObjectBody,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type PutResult,
  type StoredObject,
} from './objectStore.ts';

const CAS_LOCK_TIMEOUT_MS = 30_000;

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function etagOf(s: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `"${s.ino.toString(16)}-${s.size.toString(16)}-${s.mtimeNs.toString(16)}"`;
}

export class LocalObjectStore implements ObjectStore {
  readonly kind = 'local' as const;
  readonly location: string;
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.location = this.root;
  }

  private pathOf(key: string): string {
    return join(this.root, ...checkKey(key).split('/'));
  }

  private fail(action: string, key: string, err: unknown): InfrastructureError {
    return new InfrastructureError(`cannot ${action} ${join(this.root, key)}: ${errorMessage(err)}`, { cause: err });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.pathOf(key);
    try {
      const s = await stat(path, { bigint: true });
      if (!s.isFile()) return undefined;
      return { key, size: Number(s.size), etag: etagOf(s), lastModified: Number(s.mtimeMs) };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.fail('stat', key, err);
    }
  }

  async get(key: string): Promise<StoredObject | undefined> {
    const path = this.pathOf(key);
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
      throw this.fail('open', key, err);
    }
    try {
      // The tag of the file we read, not of whatever is at the name a moment later.
      const s = await handle.stat({ bigint: true });
      if (!s.isFile()) return undefined;
      const bytes = await handle.readFile();
      return { key, size: bytes.length, etag: etagOf(s), lastModified: Number(s.mtimeMs), bytes };
    } catch (err) {
      throw this.fail('read', key, err);
    } finally {
      await handle.close();
    }
  }

  async put(key: string, body: ObjectBody, options: PutOptions = {}): Promise<PutResult> {
    const path = this.pathOf(key);
    const tmp = await this.writeTemp(path, async (fh) => {
      await fh.writeFile(typeof body === 'string' ? Buffer.from(body) : body);
    });
    return this.place(key, path, tmp, options);
  }

  async putFile(key: string, from: string, options: PutOptions = {}): Promise<PutResult> {
    const path = this.pathOf(key);
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await copyFile(from, tmp);
      const fh = await open(tmp, 'r+');
      await fh.sync().finally(() => fh.close());
    } catch (err) {
      rmSync(tmp, { force: true });
      throw this.fail('write', key, err);
    }
    return this.place(key, path, tmp, options);
  }

  /** A durable temporary file beside `path` with the content `fill` writes. */
  private async writeTemp(path: string, fill: (fh: FileHandle) => Promise<void>): Promise<string> {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const fh = await open(tmp, 'w');
    try {
      await fill(fh);
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      rmSync(tmp, { force: true });
      throw this.fail('write', path, err);
    }
    await fh.close();
    return tmp;
  }

  private async place(key: string, path: string, tmp: string, options: PutOptions): Promise<PutResult> {
    try {
      if (options.ifAbsent) {
        try {
          await link(tmp, path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { ok: false, reason: 'exists' };
          throw err;
        }
      } else if (options.ifMatch !== undefined) {
        const lock = `${path}.cas-lock`;
        await acquireLock(lock, CAS_LOCK_TIMEOUT_MS);
        try {
          const current = await this.head(key);
          if (current?.etag !== options.ifMatch) return { ok: false, reason: 'changed' };
          await rename(tmp, path);
        } finally {
          releaseLock(lock);
        }
      } else {
        await rename(tmp, path);
      }
      fsyncDir(dirname(path));
    } catch (err) {
      throw this.fail('write', key, err);
    } finally {
      rmSync(tmp, { force: true });
    }
    const info = await this.head(key);
    if (!info) throw new InfrastructureError(`${path} vanished right after it was written`);
    return { ok: true, etag: info.etag };
  }

  async download(key: string, to: string): Promise<boolean> {
    const from = this.pathOf(key);
    mkdirSync(dirname(to), { recursive: true });
    const tmp = `${to}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await copyFile(from, tmp);
      await rename(tmp, to);
      return true;
    } catch (err) {
      await rm(tmp, { force: true });
      if (isMissing(err)) return false;
      throw this.fail('copy', key, err);
    }
  }

  async *list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    // Walk only the folder the prefix names (its last segment may be a partial name).
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    const keys: string[] = [];
    const walk = async (relDir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(relDir === '' ? this.root : join(this.root, ...relDir.split('/')), { withFileTypes: true });
      } catch (err) {
        if (isMissing(err)) return;
        throw this.fail('list', relDir, err);
      }
      for (const e of entries) {
        const rel = joinKey(relDir, e.name);
        if (e.isDirectory()) {
          // Descend only where keys under the prefix can be.
          if (rel.startsWith(prefix) || prefix.startsWith(`${rel}/`)) await walk(rel);
        } else if (e.isFile() && !isReservedName(e.name) && rel.startsWith(prefix)) {
          keys.push(rel);
        }
      }
    };
    await walk(base);
    // S3 lists in UTF-8 byte order; JavaScript's default sort compares UTF-16 code units.
    keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of keys) {
      if (options.startAfter !== undefined && Buffer.compare(Buffer.from(key), Buffer.from(options.startAfter)) <= 0) continue;
      const info = await this.head(key);
      if (info) yield info;
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await rm(this.pathOf(key), { force: true });
    } catch (err) {
      throw this.fail('delete', key, err);
    }
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  child(prefix: string): ObjectStore {
    return new LocalObjectStore(join(this.root, ...checkKey(prefix.replace(/\/$/, '')).split('/')));
  }
}
