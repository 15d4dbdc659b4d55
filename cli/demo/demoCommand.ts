/**
 * `lk demo` (`npm run demo`): its options and registration. The demo itself (demo.ts) loads every
 * layer, so it is imported only when the command runs: `lk --help` and the other commands start
 * without it.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import {
  addCommonOptions,
  addOptions,
  port,
  positiveDuration,
  positiveInt,
  type CommonOptions,
  type OptionSpec,
} from '../../services/config/cliOptions.ts';
import { LAKE_URI_OPTION } from '../../services/lake/lakeLocation.ts';

export interface DemoOptions extends CommonOptions {
  port: number;
  host: string;
  rate: number;
  batchInterval: number;
  tour?: boolean;
  lakeUri?: string;
}

const DEMO_OPTIONS: OptionSpec[] = [
  {
    flags: '--port <port>',
    description: 'HTTP port of GraphQL and the dashboard (0 = any free port)',
    env: 'LK_DEMO_PORT',
    default: 4000,
    parse: port,
  },
  { flags: '--host <addr>', description: 'address to listen on', env: 'LK_DEMO_HOST', default: '127.0.0.1' },
  { flags: '--rate <n>', description: 'live events per second', env: 'LK_DEMO_RATE', default: 200, parse: positiveInt },
  {
    flags: '--batch-interval <duration>',
    description: 'how often the batch layer recomputes its views',
    env: 'LK_DEMO_BATCH_INTERVAL',
    default: 60_000,
    defaultText: '1m',
    parse: positiveDuration,
  },
  { flags: '--tour', description: 'then walk through reprocessing: replay into v2 with a changed metric file, diff, promote, roll back' },
  LAKE_URI_OPTION,
];

export function registerDemoCommand(program: Command): void {
  const cmd = program
    .command('demo')
    .description('the whole platform in one process: live events, speed and batch layers, GraphQL and the dashboard (npm run demo)');
  addCommonOptions(addOptions(cmd, DEMO_OPTIONS)).action(async (opts: DemoOptions) => (await import('./demo.ts')).runDemo(opts));
  cmd.addHelpText(
    'after',
    `\nThe same data dir afterwards: lk versions, lk serve, lk speed ... (--data-dir ${join('.', 'data')} by default).`,
  );
}
