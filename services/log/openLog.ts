/** Chooses the log adapter: Kafka when brokers are configured, else the embedded log in the data dir. */
import { ConfigError } from '../errors.ts';
import { EmbeddedLog } from './embedded/embeddedLog.ts';
import type { EventLog } from './eventLog.ts';
import { loadKafkaClientConfig } from './kafka/kafkaClientConfig.ts';
import { KafkaLog } from './kafka/kafkaLog.ts';

// A client whose security settings do not fit the cluster fails with one of these (fatal: retrying
// cannot help); layers recognise them here rather than in the adapter's internals.
export { isKafkaSecurityError } from './kafka/securityErrors.ts';

export interface LogConfig {
  /** Comma-separated bootstrap servers, or undefined for the embedded log (or bootstrap.servers of kafkaConfig). */
  brokers?: string | undefined;
  /** Directory of the embedded log. */
  embeddedDir: string;
  clientId?: string;
  /** A Java client properties file (--kafka-config): TLS, SASL, bootstrap.servers, client.id. */
  kafkaConfig?: string | undefined;
}

const HOST_PORT = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;

/** `what` names where the list comes from in messages. */
export function parseBrokers(text: string, what = '--brokers/KAFKA_BROKERS'): string[] {
  const brokers = text
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  if (brokers.length === 0) throw new ConfigError(`${what} is empty; give host:port[,host:port]`);
  for (const b of brokers) {
    if (!HOST_PORT.test(b)) throw new ConfigError(`invalid broker address "${b}" in ${what}: expected host:port`);
  }
  return brokers;
}

export function openLog(config: LogConfig): EventLog {
  const client = config.kafkaConfig ? loadKafkaClientConfig(config.kafkaConfig) : undefined;
  const fromFlag = config.brokers !== undefined && config.brokers.trim() !== '' ? config.brokers : undefined;
  const fromFile = client?.bootstrapServers;
  if (fromFlag !== undefined || fromFile !== undefined) {
    const brokers =
      fromFlag !== undefined ? parseBrokers(fromFlag) : parseBrokers(fromFile!.value, `${fromFile!.where}: bootstrap.servers`);
    // client.id of the file names every client of the command, as it does for Kafka's own tools.
    const clientId = client?.clientId ?? config.clientId;
    return new KafkaLog({ brokers, ...(clientId ? { clientId } : {}), ...(client ? { security: client.security } : {}) });
  }
  if (client) {
    throw new ConfigError(
      `--kafka-config ${client.file} is for Kafka, but no brokers are given: set --brokers/KAFKA_BROKERS or bootstrap.servers in the file`,
    );
  }
  return new EmbeddedLog({ root: config.embeddedDir });
}
