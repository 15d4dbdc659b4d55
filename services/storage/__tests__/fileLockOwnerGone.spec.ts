/**
 * A lock whose owner is gone is taken over, one whose owner lives is not: on this host by the
 * owner's pid and token (a restarted container meets its previous run's lock under its own pid),
 * on another host (another container on a shared volume) by the lock's age, which live holders
 * keep fresh.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers.ts';
import { releaseLock, tryLock } from '../fileLock.ts';

describe('file locks whose owner is gone', () => {
  const dir = tempDir('lk-lock-');
  afterAll(() => dir.remove());
  const deadPid = (() => {
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    return Number(child.stdout.toString());
  })();
  const old = (path: string, ms: number) => utimesSync(path, new Date(Date.now() - ms), new Date(Date.now() - ms));

  const cases: [string, string, ((path: string) => void) | undefined, boolean][] = [
    ['a dead process of this host', `${deadPid} ${hostname()} 0123456789abcdef`, undefined, true],
    ['an older lock naming only a dead pid', `${deadPid}`, undefined, true],
    [
      'our own pid with another token (the previous run of a restarted container)',
      `${process.pid} ${hostname()} 0123456789abcdef`,
      undefined,
      true,
    ],
    ['a live process of this host', `${process.ppid} ${hostname()} 0123456789abcdef`, undefined, false],
    ['another host, touched recently', `7 some-other-container 0123456789abcdef`, undefined, false],
    ['another host, untouched for two minutes', `7 some-other-container 0123456789abcdef`, (p) => old(p, 120_000), true],
    ['being written (empty) just now', '', undefined, false],
    ['empty for a minute (its owner died while writing it)', '', (p) => old(p, 60_000), true],
  ];

  it.each(cases)('%s', (_what, content, age, takenOver) => {
    const path = join(dir.path, `${Math.random().toString(36).slice(2)}.lock`);
    writeFileSync(path, content);
    age?.(path);
    expect(tryLock(path)).toBe(takenOver);
    if (takenOver) {
      expect(readFileSync(path, 'utf8')).toMatch(new RegExp(`^${process.pid} ${hostname()} [0-9a-f]{16}$`));
      releaseLock(path);
    } else expect(readFileSync(path, 'utf8')).toBe(content);
  });

  it('a lock this process holds is not taken again', () => {
    const path = join(dir.path, 'mine.lock');
    expect(tryLock(path)).toBe(true);
    expect(tryLock(path)).toBe(false);
    releaseLock(path);
    expect(tryLock(path)).toBe(true);
    releaseLock(path);
  });
});
