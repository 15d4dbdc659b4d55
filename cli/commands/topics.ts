/** `lk topics create|list`: the events topic and its dead-letter topic. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { DEFAULT_EVENTS_PARTITIONS, DEFAULT_EVENTS_TOPIC, eventTopicSpecs } from '../../services/log/topics.ts';
import { addCommonOptions, context, positiveInt, topicName, type CommonOptions } from '../../services/config/cliOptions.ts';

export function registerTopicsCommands(program: Command): void {
  const topics = program.command('topics').description('manage the event log topics');

  addCommonOptions(
    topics
      .command('create')
      .description('create the events topic (unlimited retention: the log is the history replay needs) and its dead-letter topic')
      .addOption(new Option('--topic <name>', 'events topic').env('LK_TOPIC').default(DEFAULT_EVENTS_TOPIC).argParser(topicName))
      .addOption(
        new Option('--partitions <n>', 'partitions of the events topic')
          .env('LK_PARTITIONS')
          .default(DEFAULT_EVENTS_PARTITIONS)
          .argParser(positiveInt),
      ),
  ).action(async (opts: CommonOptions & { topic: string; partitions: number }) => {
    const log = context(opts).openLog();
    try {
      const result = await log.createTopics(eventTopicSpecs(opts.topic, opts.partitions));
      for (const name of result.created) console.log(`created ${name} on ${log.location}`);
      for (const name of result.existing) {
        console.log(`exists  ${name} on ${log.location} (${await log.partitionCount(name)} partitions)`);
      }
    } finally {
      await log.close();
    }
  });

  addCommonOptions(topics.command('list').description('list topics with partitions and end offsets')).action(
    async (opts: CommonOptions) => {
      const log = context(opts).openLog();
      try {
        for (const name of await log.listTopics()) {
          const ends = await log.endOffsets(name);
          console.log(`${name}\tpartitions=${ends.length}\trecords=${ends.reduce((a, b) => a + b, 0)}`);
        }
      } finally {
        await log.close();
      }
    },
  );
}
