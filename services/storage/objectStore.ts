/**
 * The one storage seam: everything the platform keeps outside Kafka (the lake and its Delta log,
 * checkpoints, savepoints, version records, the DEFAULT pointer, batch view snapshots, status)
 * is an object in an `ObjectStore`, either a local folder or an S3 bucket. The code above never
 * knows which one it has, as with Arrow's `object_store` crate or Flink's `FileSystem`: a small
 * interface of get, put with a condition, list and delete.
 *
 * The conditions are what the protocols built on top rely on:
 * - `ifAbsent` (S3 `If-None-Match: *`): create-only. Of any number of concurrent creates of one
 *   key exactly one succeeds, and the object appears whole or not at all. The Delta log's commit
 *   of version N+1 and checkpoint snapshots under create-only names are built on it.
 * - `ifMatch` (S3 `If-Match: <etag>`): replace exactly the version one read (compare-and-swap).
 *   The DEFAULT pointer and fencing tokens are built on it.
 * Both implementations are tested against the same contract
 * (`__tests__/objectStore.contract.spec.ts`), the S3 one against a real S3 server.
 *
 * Keys are relative, `/`-separated paths (`lake/events/_delta_log/00000000000000000003.json`);
 * `..`, empty segments and a leading `/` are refused. Names ending in `.tmp-<pid>-<hex>` or
 * `.cas-lock` are reserved by the local store for its temporary files and locks.
 */
import { InfrastructureError } from '../errors.ts';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Opaque version tag: changes whenever the object is replaced (S3's ETag, quotes included). */
  etag: string;
  /** Epoch ms of the last write. */
  lastModified: number;
}

export interface StoredObject extends ObjectInfo {
  bytes: Buffer;
}

export interface PutOptions {
  /** Create only: fails (`{ ok: false, reason: 'exists' }`) when the key exists. */
  ifAbsent?: boolean;
  /** Replace only this version: fails (`{ ok: false, reason: 'changed' }`) when the object is another one or gone. */
  ifMatch?: string;
}

export type PutResult = { ok: true; etag: string } | { ok: false; reason: 'exists' | 'changed' };

export type ObjectBody = Buffer | Uint8Array | string;

export interface ObjectStore {
  readonly kind: 'local' | 's3';
  /** Where it is, for messages: a folder or `s3://bucket/prefix` (never a credential). */
  readonly location: string;

  get(key: string): Promise<StoredObject | undefined>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Writes `body` under `key`, whole or not at all, durably once the promise resolves. */
  put(key: string, body: ObjectBody, options?: PutOptions): Promise<PutResult>;
  /** The same from a local file, streamed (large Parquet files, checkpoint snapshots). */
  putFile(key: string, path: string, options?: PutOptions): Promise<PutResult>;
  /** Copies the object into the local file `path` (created or replaced whole); false when absent. */
  download(key: string, path: string): Promise<boolean>;
  /** Every object whose key starts with `prefix`, in key order (UTF-8 byte order, as S3 lists). */
  list(prefix: string, options?: { startAfter?: string }): AsyncIterable<ObjectInfo>;
  /** Removes the object; removing a missing key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * The object's path on this machine when the store is a local folder (DuckDB then reads it in
   * place), else undefined (the caller downloads it first: `download`).
   */
  localPath(key: string): string | undefined;
  /** A store for the keys under `prefix` (`child('lake/events')`), same semantics. */
  child(prefix: string): ObjectStore;
}

/** Every object under `prefix`, collected. */
export async function listAll(store: ObjectStore, prefix: string, options?: { startAfter?: string }): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of store.list(prefix, options)) out.push(info);
  return out;
}

/** The object's text, or undefined when it does not exist. */
export async function getText(store: ObjectStore, key: string): Promise<string | undefined> {
  const object = await store.get(key);
  return object?.bytes.toString('utf8');
}

const RESERVED_SUFFIX = /(\.tmp-\d+-[0-9a-f]{8}|\.cas-lock)$/;

/** Refuses keys that could escape the store's root or collide with its reserved names. */
export function checkKey(key: string): string {
  const bad = (why: string) => new InfrastructureError(`invalid object key ${JSON.stringify(key)}: ${why}`);
  if (key === '') throw bad('it is empty');
  if (key.startsWith('/')) throw bad('it starts with /');
  if (key.includes('\\')) throw bad('it contains a backslash (keys use /)');
  if (key.includes('\u0000')) throw bad('it contains a NUL character');
  for (const segment of key.split('/')) {
    if (segment === '') throw bad('it has an empty path segment');
    if (segment === '.' || segment === '..') throw bad(`it has a "${segment}" segment`);
  }
  if (RESERVED_SUFFIX.test(key)) throw bad('names ending in .tmp-<pid>-<hex> or .cas-lock are reserved');
  return key;
}

/** A listing prefix may be empty (everything) or end with `/`; otherwise it follows the key rules. */
export function checkPrefix(prefix: string): string {
  if (prefix === '') return prefix;
  checkKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix;
}

/** Whether a listed name is one of the local store's own temporary or lock files. */
export function isReservedName(name: string): boolean {
  return RESERVED_SUFFIX.test(name);
}

/** `a/b` + `c/d` -> `a/b/c/d` (either may be empty). */
export function joinKey(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}
