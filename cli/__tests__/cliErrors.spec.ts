/** The CLI's failure paths: one clear line, the right exit code, never a stack trace or a hang. */
import { describe, expect, it } from 'vitest';
import { runLk } from '../../test/cli.ts';
import { tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const oneLine = (text: string) => text.trim().split('\n').length === 1;

describe('lk command line errors', () => {
  it('refuses unknown flags and invalid values with one line and exit code 2', async () => {
    const unknown = await runLk(['produce', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim()).toBe("lk: error: unknown option '--bogus'");
    const invalid = await runLk(['topics', 'create', '--partitions', '0']);
    expect(invalid.code).toBe(2);
    expect(oneLine(invalid.stderr)).toBe(true);
    expect(invalid.stderr).toMatch(/--partitions <n>.* is invalid\. must be a positive integer/);
    const badEnv = await runLk(['generate', '--count', '1'], { env: { LK_GEN_DUPLICATES: '1.5' } });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toMatch(/between 0 and 1/);
  });

  it('has --help on every command', async () => {
    for (const cmd of [['topics', 'create'], ['topics', 'list'], ['produce'], ['generate']]) {
      const help = await runLk([...cmd, '--help']);
      expect(help.code, cmd.join(' ')).toBe(0);
      expect(help.stdout).toContain('--data-dir');
      expect(help.stdout).toContain('env: KAFKA_BROKERS');
    }
  });

  it('fails clearly and promptly when the broker is unreachable', async () => {
    const dir = tempDir();
    const file = join(dir.path, 'e.jsonl');
    writeFileSync(file, `${JSON.stringify({ id: 'a', type: 't', ts: Date.now() })}\n`);
    const result = await runLk(['produce', '--brokers', '127.0.0.1:1', '--file', file]);
    dir.remove();
    expect(result.code).toBe(1);
    expect(oneLine(result.stderr)).toBe(true);
    expect(result.stderr).toMatch(/^lk: cannot reach Kafka at 127\.0\.0\.1:1/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('says when the topic does not exist, and when the input file is unreadable', async () => {
    const missingTopic = await runLk(['produce', '--brokers', testBrokers(), '--topic', uniqueName('nope')], { input: '' });
    expect(missingTopic.code).toBe(1);
    expect(missingTopic.stderr).toMatch(/topic "nope-.*" does not exist .*lk topics create/);
    const missingFile = await runLk(['produce', '--file', '/nonexistent/events.jsonl']);
    expect(missingFile.code).toBe(1);
    expect(missingFile.stderr.trim()).toBe('lk: cannot read /nonexistent/events.jsonl: ENOENT');
  });

  it('reports bad metric definitions with file and line', async () => {
    const dir = tempDir();
    const file = join(dir.path, 'metrics.yaml');
    writeFileSync(file, 'metrics:\n  - name: a\n    key: k\n    granularities: [week]\n    allowedLateness: 1m\n');
    const { loadMetricDefinitions } = await import('../../services/metrics/definitions.ts');
    expect(() => loadMetricDefinitions(file)).toThrow(
      new RegExp(
        `${file}:4:\\d+ metrics\\[0\\]\\.granularities\\[0\\]: expected one of minute, hour, day or a duration \\(5m, 15m, 6h, 7d\\), got "week"`,
      ),
    );
    dir.remove();
  });
});

describe('lk generate', () => {
  it('is deterministic for a seed and writes duplicates', async () => {
    const args = ['generate', '--count', '2000', '--seed', '7', '--start', '2026-01-01T00:00:00Z', '--duplicates', '0.1'];
    const a = await runLk(args);
    const b = await runLk(args);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const ids = a.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).id as string);
    const distinct = new Set(ids).size;
    expect(distinct).toBe(2000);
    expect(ids.length - distinct).toBeGreaterThan(100);
    expect(ids.length - distinct).toBeLessThan(300);
  });
});
