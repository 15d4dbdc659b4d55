/**
 * Kafka's own command-line tools, from the jars the project resolves for its broker
 * (scripts/kafka.mjs): tests use them as producers and consumers that are not ours, so that what
 * the platform reads and writes is proven against Apache Kafka's clients, not only kafkajs.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureKafkaJars, findJava } from '../scripts/kafka.mjs';
import { testBrokers } from './helpers.ts';

const QUIET_LOG4J = join(tmpdir(), 'lk-kafka-tools-log4j2.properties');
writeFileSync(
  QUIET_LOG4J,
  'rootLogger.level = warn\nrootLogger.appenderRef.stderr.ref = STDERR\nappender.stderr.type = Console\nappender.stderr.name = STDERR\nappender.stderr.target = SYSTEM_ERR\nappender.stderr.layout.type = PatternLayout\nappender.stderr.layout.pattern = %p %m%n\n',
);

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `java -cp <kafka libs>/* <mainClass> <args>` with `input` on stdin; rejects on a non-zero exit. */
export async function kafkaTool(mainClass: string, args: string[], input?: string): Promise<ToolResult> {
  const { libs } = await ensureKafkaJars({ quiet: true });
  const { java } = findJava();
  return new Promise((resolve, reject) => {
    const child = spawn(java, ['-Xmx256m', `-Dlog4j2.configurationFile=${QUIET_LOG4J}`, '-cp', `${libs}/*`, mainClass, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ code, stdout, stderr });
      else reject(new Error(`${mainClass} ${args.join(' ')} exited with ${code}:\n${stderr.slice(-2000)}`));
    });
    child.stdin.end(input ?? '');
  });
}

/**
 * Writes `lines` with Kafka's console producer: no key (the platform's dedup key, the event id,
 * is inside the value only), round-robin over the topic's partitions, so that copies of one event
 * land in different partitions (an at-least-once relay, or a producer that does not key by id).
 */
export async function consoleProduce(
  topic: string,
  lines: readonly string[],
  extraProperties: Record<string, string> = {},
  /** The console producer's own reader properties (`--property`), e.g. parse.key=true and key.separator. */
  readerProperties: Record<string, string> = {},
): Promise<void> {
  const props = {
    'partitioner.class': 'org.apache.kafka.clients.producer.RoundRobinPartitioner',
    'linger.ms': '0',
    ...extraProperties,
  };
  await kafkaTool(
    'org.apache.kafka.tools.ConsoleProducer',
    [
      '--bootstrap-server',
      testBrokers(),
      '--topic',
      topic,
      ...Object.entries(props).flatMap(([k, v]) => ['--producer-property', `${k}=${v}`]),
      ...Object.entries(readerProperties).flatMap(([k, v]) => ['--property', `${k}=${v}`]),
    ],
    lines.join('\n') + '\n',
  );
}

/** Raises a topic's partition count with Kafka's topic tool (kafka-topics.sh --alter). */
export async function raisePartitions(topic: string, partitions: number): Promise<void> {
  await kafkaTool('org.apache.kafka.tools.TopicCommand', [
    '--bootstrap-server',
    testBrokers(),
    '--alter',
    '--topic',
    topic,
    '--partitions',
    String(partitions),
  ]);
}
