/**
 * Local paths of lake data files, for DuckDB.
 *
 * DuckDB reads local files; its `httpfs` extension (S3) is not built into `@duckdb/node-api` and
 * cannot be downloaded where the platform may run (no network but the package registries). So a
 * lake on a local disk is read in place, and a lake on object storage is read from a local cache
 * of its data files: a file is downloaded once, whole (atomically, through the store), and
 * reused by every later read, in this process or the next one. That is sound because data files
 * are immutable: "Data files MUST be uniquely named and MUST NOT be overwritten" (PROTOCOL.md,
 * "Data Files"); a cached file is reused only when its size is the one the log records.
 *
 * The cache is bounded (`LK_LAKE_CACHE_BYTES`, default 20 GiB): after a read, the files used
 * least recently are deleted until it fits, never the files of the read in progress. A full
 * recompute reads the whole lake, so a cache smaller than the lake means downloading it again on
 * every run (docs/lake.md gives the figures).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { InfrastructureError } from '../errors.ts';
import type { ObjectStore } from '../storage/objectStore.ts';

export const DEFAULT_LAKE_CACHE_BYTES = 20 * 1024 ** 3;
const PARALLEL_DOWNLOADS = 8;

export interface CachedFile {
  key: string;
  size: number;
}

export interface CacheStats {
  hits: number;
  downloads: number;
  downloadedBytes: number;
  evicted: number;
}

export class LakeFileAccess {
  private readonly dir: string | undefined;
  readonly stats: CacheStats = { hits: 0, downloads: 0, downloadedBytes: 0, evicted: 0 };

  constructor(
    private readonly store: ObjectStore,
    cacheRoot: string,
    private readonly maxBytes = Number(process.env.LK_LAKE_CACHE_BYTES ?? DEFAULT_LAKE_CACHE_BYTES),
  ) {
    // One folder per store location: two lakes never share cached names.
    this.dir =
      store.localPath('x') === undefined
        ? join(cacheRoot, createHash('sha256').update(store.location).digest('hex').slice(0, 16))
        : undefined;
  }

  /** Whether files are read in place (a local lake) rather than through the cache. */
  get inPlace(): boolean {
    return this.dir === undefined;
  }

  /** Local paths of `files`, in the same order: in place, or cached (downloaded when needed). */
  async localPaths(files: readonly CachedFile[]): Promise<string[]> {
    if (this.dir === undefined) return files.map((f) => this.store.localPath(f.key)!);
    const dir = this.dir;
    const paths = files.map((f) => join(dir, ...f.key.split('/')));
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const i = next++;
        await this.ensure(files[i]!, paths[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_DOWNLOADS, files.length) }, worker));
    this.evict(new Set(paths));
    return paths;
  }

  private async ensure(file: CachedFile, path: string): Promise<void> {
    try {
      if (statSync(path).size === file.size) {
        const now = new Date();
        utimesSync(path, now, now); // recently used: evicted last
        this.stats.hits++;
        return;
      }
    } catch {
      // not cached yet
    }
    if (!(await this.store.download(file.key, path)))
      throw new InfrastructureError(`${this.store.location}/${file.key} is listed by the lake's log but does not exist`);
    const size = statSync(path).size;
    if (size !== file.size) {
      rmSync(path, { force: true });
      throw new InfrastructureError(`${this.store.location}/${file.key} has ${size} bytes, the lake's log says ${file.size}`);
    }
    this.stats.downloads++;
    this.stats.downloadedBytes += size;
  }

  /** Deletes the least recently used files until the cache fits, keeping `inUse`. */
  private evict(inUse: Set<string>): void {
    if (this.dir === undefined) return;
    const entries: { path: string; size: number; used: number }[] = [];
    const walk = (d: string) => {
      let names: string[];
      try {
        names = readdirSync(d);
      } catch {
        return;
      }
      for (const n of names) {
        const p = join(d, n);
        const s = statSync(p, { throwIfNoEntry: false });
        if (!s) continue;
        if (s.isDirectory()) walk(p);
        else entries.push({ path: p, size: s.size, used: s.mtimeMs });
      }
    };
    mkdirSync(this.dir, { recursive: true });
    walk(this.dir);
    let total = entries.reduce((n, e) => n + e.size, 0);
    if (total <= this.maxBytes) return;
    for (const e of entries.sort((a, b) => a.used - b.used)) {
      if (total <= this.maxBytes) break;
      if (inUse.has(e.path)) continue;
      rmSync(e.path, { force: true });
      total -= e.size;
      this.stats.evicted++;
    }
  }
}
