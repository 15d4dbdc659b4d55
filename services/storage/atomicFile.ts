/**
 * Every file the platform replaces or creates as one unit goes through here, with one durability
 * rule: the content is written to a temporary name in the same directory and fsynced, then
 * renamed (or hard-linked, for an exclusive create) to its name, and the directory is fsynced.
 * A reader, and a process restarted after a crash or a power loss, sees the old file or the new
 * one complete, never a torn one, and never loses a file whose write returned.
 *
 * Used by: checkpoints and savepoints, job and version records, status files, the lake manifest
 * and its checkpoint, the batch views' run.json and CURRENT pointer, the embedded log's redo logs,
 * epochs and group offsets.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crashPoint, type CrashPoint } from '../faults/crashPoints.ts';

function tempPathFor(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** fsyncs a directory, so that a rename or link in it survives a power loss. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsyncs a file that was written by other means (DuckDB's COPY, for example). */
export function fsyncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeTempSync(path: string, bytes: Uint8Array | string): string {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, typeof bytes === 'string' ? Buffer.from(bytes) : bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return tmp;
}

/**
 * Replaces `path` with `bytes` atomically and durably. `beforeRename` names the crash point
 * between the durable temporary file and the rename (the fault-injection tests stop there).
 */
export function writeFileAtomicSync(path: string, bytes: Uint8Array | string, beforeRename?: CrashPoint): void {
  renameIntoPlace(writeTempSync(path, bytes), path, beforeRename);
}

/** The durable temporary file `tmp` becomes `path` (removed on failure), and the directory is fsynced. */
function renameIntoPlace(tmp: string, path: string, beforeRename: CrashPoint | undefined): void {
  try {
    if (beforeRename) crashPoint(beforeRename);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dirname(path));
}

/** The same, writing the content without blocking the event loop (large checkpoint snapshots). */
export async function writeFileAtomic(path: string, bytes: Uint8Array, beforeRename?: CrashPoint): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  renameIntoPlace(tmp, path, beforeRename);
}

/**
 * Creates `path` with `bytes` only if it does not exist yet: the content is made durable under a
 * temporary name, then hard-linked to `path` (link(2) fails when the name exists, and the name
 * appears with its whole content or not at all). Returns false when `path` already existed.
 */
export function createFileExclusiveSync(path: string, bytes: Uint8Array | string, beforeLink?: CrashPoint): boolean {
  const tmp = writeTempSync(path, bytes);
  try {
    if (beforeLink) crashPoint(beforeLink);
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  fsyncDir(dirname(path));
  return true;
}

/** Moves a finished file into place durably (the file's content first, then the rename). */
export function placeFileSync(from: string, to: string): void {
  fsyncFile(from);
  mkdirSync(dirname(to), { recursive: true });
  renameSync(from, to);
  fsyncDir(dirname(to));
}

/** Whether `name` is a temporary file of this module left by a process that is not this one. */
export function isStaleTempName(name: string): boolean {
  return name.includes('.tmp-') && !name.includes(`.tmp-${process.pid}-`);
}
