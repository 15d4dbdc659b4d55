/**
 * Savepoints: taken while the job runs, restored after the checkpoints are lost, exact result;
 * refused with a precise message when the metric file changed incompatibly; listed and deleted.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { speedStatusKey } from '../../services/status/speedStatus.ts';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { runLk } from '../../test/cli.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { TEST_METRICS_YAML, computeOracle } from './support/oracle.ts';
import {
  killAllSpeed,
  caughtUp,
  compareWithOracle,
  createEventsTopic,
  kafkaLog,
  produceLines,
  readView,
  spawnSpeed,
  writeTestMetrics,
} from './support/harness.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 4242);

describe(`savepoints (seed ${SEED})`, () => {
  const brokers = testBrokers();
  const log = kafkaLog(brokers);
  const dir = tempDir('lk-speed-savepoint-');
  afterAll(async () => {
    killAllSpeed();
    await log.close();
    dir.remove();
  });

  it(
    'restarting from a savepoint (checkpoints lost) gives the exact view; incompatible metrics are refused',
    { timeout: 150_000 },
    async () => {
      const metricsFile = writeTestMetrics(dir.path);
      const lines = [
        ...generateEventLines({
          seed: SEED,
          count: 60_000,
          startTime: Date.UTC(2026, 0, 3, 23, 40),
          eventsPerSecond: 30,
          lateRate: 0.02,
          lateMinMs: 60_000,
          lateMaxMs: 1_800_000,
        }),
      ];
      const oracle = computeOracle(lines, 6, 2000);
      const topic = uniqueName('speed-savepoint');
      const version = `s${Date.now().toString(36)}`;
      const group = `lk-speed-${version}`;
      const common = ['--topic', topic, '--version', version, '--metrics', metricsFile, '--data-dir', dir.path];
      const args = [...common, '--out-of-orderness', '2s', '--checkpoint-interval', '300ms'];
      const env = { KAFKA_BROKERS: brokers };
      const untilCaughtUp = (what: string) =>
        eventually(async () => ((await caughtUp(log, group, topic)) ? true : undefined), what, 90_000);
      await createEventsTopic(log, topic, 6);

      // First half, savepoint while the job runs, second half.
      await produceLines(log, topic, lines.slice(0, 30_000));
      const first = spawnSpeed(args, env);
      try {
        await untilCaughtUp('the first half');
        const taken = await runLk(['speed', 'savepoint', '--name', 'half', ...common], { env });
        expect(taken.code, taken.stderr).toBe(0);
        expect(taken.stdout).toMatch(/savepoint half of version/);
        await produceLines(log, topic, lines.slice(30_000));
        await untilCaughtUp('the second half');
      } finally {
        first.child.kill('SIGTERM');
      }
      expect((await first.exited).code, first.output()).toBe(0);

      const listed = await runLk(['speed', 'savepoints', 'list', ...common], { env });
      expect(listed.stdout).toMatch(new RegExp(`^half\\tversion=${version}\\ttopic=${topic}`, 'm'));

      // An incompatible metric file is refused with the exact reason, and nothing starts: a
      // version's definitions never change (its own copy is kept with it), so a plain restart
      // with another file is refused against the version; starting a new version from the
      // savepoint is refused against the savepoint's definitions, and leaves no version behind.
      const changed = join(dir.path, 'changed.yaml');
      writeFileSync(changed, TEST_METRICS_YAML.replace('key: ad_id', 'key: campaign_id'));
      const refused = await runLk(['speed', ...args, '--metrics', changed], { env });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(
        new RegExp(
          `changed\\.yaml is not the metric file of version "${version}" .*: metric "clicks_by_ad": key is "campaign_id" in the file, "ad_id" in the version`,
        ),
      );
      const fresh = `${version}-b`;
      const freshArgs = [...args, '--version', fresh, '--metrics', changed, '--from-savepoint', 'half'];
      const refusedSavepoint = await runLk(['speed', ...freshArgs], { env });
      expect(refusedSavepoint.code).toBe(2);
      expect(refusedSavepoint.stderr).toMatch(
        /cannot start from savepoint: metric "clicks_by_ad": key changed from "ad_id" to "campaign_id"; the savepoint "half" was computed with the old key/,
      );
      expect(existsSync(join(dir.path, 'versions', fresh))).toBe(false);

      // Lose the checkpoints, then restart from the savepoint: the state comes from it alone.
      rmSync(join(dir.path, 'speed', 'checkpoints', version), { recursive: true, force: true });
      const restored = spawnSpeed([...args, '--from-savepoint', 'half', '--instance-id', 'restored'], { ...env, LK_LOG_LEVEL: 'info' });
      try {
        // The group's offsets still point at the end until the savepoint rewinds them: wait for the start first.
        await eventually(
          () => (existsSync(join(dir.path, speedStatusKey(version, 'restored'))) ? true : undefined),
          'the restored job to start',
          60_000,
        );
        expect(restored.output()).toMatch(/job state set from savepoint/);
        await untilCaughtUp('the replay from the savepoint');
      } finally {
        restored.child.kill('SIGTERM');
      }
      expect((await restored.exited).code, restored.output()).toBe(0);
      const problems = compareWithOracle(await readView(log, speedViewTopic(version)), oracle);
      expect(problems.slice(0, 20), `seed ${SEED}: ${problems.length} differences`).toEqual([]);

      const deleted = await runLk(['speed', 'savepoints', 'delete', 'half', ...common], { env });
      expect(deleted.code).toBe(0);
      const after = await runLk(['speed', 'savepoints', 'list', ...common], { env });
      expect(after.stdout).toMatch(/no savepoints/);
    },
  );
});
