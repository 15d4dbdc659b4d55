/**
 * The layer boundaries (docs/architecture.md) are enforced by `npm run lint`: this plants a
 * violation of each kind in memory and checks that ESLint, with the project's own config, refuses
 * it with the rule's message, and lets the allowed imports through.
 */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint({ cwd: new URL('..', import.meta.url).pathname });

async function boundaryErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages.filter((m) => m.ruleId === 'lk/layer-boundaries').map((m) => m.message);
}

describe('layer boundaries (lk/layer-boundaries in npm run lint)', () => {
  it.each([
    [
      'a layer importing another layer',
      'streaming/planted.ts',
      "import { recomputeBatchViews } from '../batch/views/batchViews.ts';\nvoid recomputeBatchViews;\n",
      /streaming\/ may not import batch\//,
    ],
    [
      'serving importing the speed layer',
      'serving/views/planted.ts',
      "import { SpeedJob } from '../../streaming/job/speedJob.ts';\nvoid SpeedJob;\n",
      /serving\/ may not import streaming\//,
    ],
    [
      'the core importing a layer',
      'services/metrics/planted.ts',
      "import { mergeSeries } from '../../serving/views/mergeRule.ts';\nvoid mergeSeries;\n",
      /shared core \(services\/\) may not import serving\//,
    ],
    [
      "a layer importing an adapter's internals",
      'batch/lake/planted.ts',
      "import { acquireLock } from '../../services/log/embedded/partitionStore.ts';\nvoid acquireLock;\n",
      /may not import a log adapter's internals/,
    ],
    ['anything importing the entry point', 'serving/planted.ts', "import '../cli/main.ts';\n", /nothing imports it/],
    [
      'production code importing test helpers',
      'batch/planted.ts',
      "import { tempDir } from '../test/helpers.ts';\nvoid tempDir;\n",
      /production code may not import test\//,
    ],
  ])('refuses %s', async (_what, filePath, code, message) => {
    const errors = await boundaryErrors(filePath, code);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(message);
  });

  it('allows a layer its own folder and the core, the entry point the layers, tests their adapters', async () => {
    expect(
      await boundaryErrors(
        'streaming/planted.ts',
        "import { PartitionState } from './state/partitionState.ts';\nimport { openLog } from '../services/log/openLog.ts';\nvoid PartitionState; void openLog;\n",
      ),
    ).toEqual([]);
    expect(
      await boundaryErrors('cli/planted.ts', "import { registerServeCommands } from '../serving/cli.ts';\nvoid registerServeCommands;\n"),
    ).toEqual([]);
    expect(
      await boundaryErrors(
        'batch/__tests__/planted.spec.ts',
        "import { KafkaLog } from '../../services/log/kafka/kafkaLog.ts';\nvoid KafkaLog;\n",
      ),
    ).toEqual([]);
  });
});
