/**
 * The `lk` command line. Each layer registers its own commands; this file only wires them and
 * turns errors into one-line messages and exit codes:
 *   0 success; 1 infrastructure failure (broker unreachable, file unreadable); 2 usage or
 *   configuration error. Bad *data* never fails a command: it goes to the dead-letter topic.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError, InfrastructureError, errorMessage } from '../services/errors.ts';
import { registerGenerateCommand } from './commands/generate.ts';
import { registerProduceCommand } from './commands/produce.ts';
import { registerTopicsCommands } from './commands/topics.ts';
import { registerVersionCommands } from './commands/versions.ts';
import { registerDemoCommand } from './demo/demoCommand.ts';
// Each layer registers its own commands: this is the only module that imports the layers.
import { registerSpeedCommands } from '../streaming/cli.ts';
import { registerReplayCommand } from '../streaming/replay/replayCommand.ts';
import { registerBatchCommands } from '../batch/cli.ts';
import { registerServeCommands } from '../serving/cli.ts';

const program = new Command('lk')
  .description('lambda-kappa: real-time plus batch analytics over one Kafka log')
  .configureOutput({ outputError: (text, write) => write(text.startsWith('error:') ? `lk: ${text}` : text) })
  .exitOverride();

registerTopicsCommands(program);
registerProduceCommand(program);
registerGenerateCommand(program);
registerBatchCommands(program);
registerSpeedCommands(program);
registerReplayCommand(program);
registerServeCommands(program);
registerVersionCommands(program);
registerDemoCommand(program);

function exitWith(code: number, message: string): never {
  process.stderr.write(`lk: ${message}\n`);
  process.exit(code);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 1 ? 2 : err.exitCode);
  if (err instanceof ConfigError) exitWith(2, err.message);
  if (err instanceof InfrastructureError) exitWith(1, err.message);
  if (process.env.LK_DEBUG) console.error(err);
  exitWith(1, `unexpected error: ${errorMessage(err)} (set LK_DEBUG=1 for details)`);
}
