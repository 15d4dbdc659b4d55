/** Chooses the log adapter: Kafka when brokers are configured, else the embedded log in the data dir. */
import { ConfigError } from '../errors.ts';
import { EmbeddedLog } from './embedded/embeddedLog.ts';
import type { EventLog } from './eventLog.ts';
import { KafkaLog } from './kafka/kafkaLog.ts';

export interface LogConfig {
  /** Comma-separated bootstrap servers, or undefined for the embedded log. */
  brokers?: string | undefined;
  /** Directory of the embedded log. */
  embeddedDir: string;
  clientId?: string;
}

const HOST_PORT = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;

export function parseBrokers(text: string): string[] {
  const brokers = text
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  if (brokers.length === 0) throw new ConfigError('--brokers/KAFKA_BROKERS is empty; give host:port[,host:port]');
  for (const b of brokers) {
    if (!HOST_PORT.test(b)) throw new ConfigError(`invalid broker address "${b}": expected host:port`);
  }
  return brokers;
}

export function openLog(config: LogConfig): EventLog {
  if (config.brokers !== undefined && config.brokers.trim() !== '') {
    return new KafkaLog({ brokers: parseBrokers(config.brokers), ...(config.clientId ? { clientId: config.clientId } : {}) });
  }
  return new EmbeddedLog({ root: config.embeddedDir });
}
