/**
 * What the long-running commands retry and what stops them (services/log/outages.ts), on the
 * errors kafkajs itself throws (its own error classes, built as its code builds them), on Node's
 * network and TLS errors, and on the adapter's wrapping; and the backoff's bounds.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { InfrastructureError } from '../../errors.ts';
import {
  Backoff,
  LogUnavailableError,
  MissingTopicError,
  ProducerFencedError,
  classifyLogError,
  fatalLogError,
  isConnectionFailure,
  isProducerFenced,
  mentionsMissingTopic,
} from '../outages.ts';
import { SaslAuthenticationError } from '../kafka/securityErrors.ts';

// kafkajs's error classes and its protocol error table, as its own code uses them.
const kafkajsErrors = createRequire(import.meta.url)('kafkajs/src/errors') as Record<string, new (...args: unknown[]) => Error>;
const { createErrorFromCode } = createRequire(import.meta.url)('kafkajs/src/protocol/error') as {
  createErrorFromCode(code: number): { type: string; code: number; retriable: boolean; message: string };
};
const protocolError = (code: number) => new kafkajsErrors.KafkaJSProtocolError!(createErrorFromCode(code));
const nodeError = (code: string) => Object.assign(new Error(`${code} boom`), { code });

describe('classifyLogError', () => {
  it('retries what an outage, a restarting broker or a confused client does', () => {
    const connection = new kafkajsErrors.KafkaJSConnectionError!('Connection error: connect ECONNREFUSED 127.0.0.1:9092', {
      broker: '127.0.0.1:9092',
      code: 'ECONNREFUSED',
    });
    const retriesExceeded = new kafkajsErrors.KafkaJSNumberOfRetriesExceeded!(connection, { retryCount: 5, retryTime: 2500 });
    const nonRetriable = new kafkajsErrors.KafkaJSNonRetriableError!(connection, { cause: connection });
    const retryable = [
      connection,
      retriesExceeded,
      nonRetriable,
      new kafkajsErrors.KafkaJSRequestTimeoutError!('Request Produce(key: 0, version: 7) timed out'),
      new kafkajsErrors.KafkaJSGroupCoordinatorNotFound!('Failed to find group coordinator'),
      // A transaction the broker aborted after its timeout, a client stuck in a state only a new one clears:
      protocolError(47), // INVALID_PRODUCER_EPOCH
      new kafkajsErrors.KafkaJSNonRetriableError!('Transaction state exception: Cannot call "beginTransaction" in state "COMMITTING"'),
      protocolError(14), // COORDINATOR_LOAD_IN_PROGRESS
      protocolError(3), // UNKNOWN_TOPIC_OR_PARTITION (confirmed against the topic list before it is fatal)
      nodeError('ECONNRESET'),
      new LogUnavailableError('cannot reach Kafka at 127.0.0.1:9092 (produce): Connection error'),
      new InfrastructureError('Kafka transactional produce to views.speed.v1 failed: boom', { cause: retriesExceeded }),
    ];
    for (const err of retryable) expect(classifyLogError(err), `${err.name}: ${err.message}`).toBe('retry');
    expect(isConnectionFailure(retriesExceeded)).toBe(true);
    expect(isConnectionFailure(protocolError(14))).toBe(false);
  });

  it('stops on refused credentials, denied permissions, a missing topic and a fence by a newer owner', () => {
    const fatal = [
      new kafkajsErrors.KafkaJSSASLAuthenticationError!(
        'SASL PLAIN authentication failed: Authentication failed: Invalid username or password',
      ),
      new kafkajsErrors.KafkaJSNumberOfRetriesExceeded!(protocolError(58), { retryCount: 1, retryTime: 1 }), // SASL_AUTHENTICATION_FAILED
      nodeError('CERT_HAS_EXPIRED'),
      nodeError('DEPTH_ZERO_SELF_SIGNED_CERT'),
      nodeError('ERR_TLS_CERT_ALTNAME_INVALID'),
      protocolError(29), // TOPIC_AUTHORIZATION_FAILED
      protocolError(53), // TRANSACTIONAL_ID_AUTHORIZATION_FAILED
      new MissingTopicError('events', 'topic "events" was deleted'),
      // The connection diagnosis's named security errors (--kafka-config) are fatal too.
      new SaslAuthenticationError('b1:9093', 'lk', 'SCRAM-SHA-512', 'client.properties'),
      new ProducerFencedError('fenced'),
    ];
    for (const err of fatal) expect(classifyLogError(err), `${err.name}: ${err.message}`).toBe('fatal');
  });

  it('leaves alone what is not the log failing', () => {
    for (const err of [
      nodeError('ENOSPC'),
      new Error('invariant violated: offsets strictly increasing'),
      new InfrastructureError('cannot restore partition 3'),
    ])
      expect(classifyLogError(err)).toBe('unrelated');
  });

  it('names the fatal cause in one line', () => {
    const sasl = fatalLogError(
      new kafkajsErrors.KafkaJSSASLAuthenticationError!('SASL SCRAM-SHA-512 authentication failed: bad password'),
      'b1:9093',
      'producer connect',
    );
    expect(sasl?.name).toBe('LogAuthenticationError');
    expect(sasl?.message).toBe(
      'Kafka at b1:9093 refused the credentials (producer connect): SASL SCRAM-SHA-512 authentication failed: bad password; check the SASL user and password, or the TLS certificates',
    );
    const denied = fatalLogError(protocolError(30), 'b1:9093', 'join group lk-speed-v1');
    expect(denied?.name).toBe('LogAuthorizationError');
    expect(denied?.message).toMatch(/^Kafka at b1:9093 denied join group lk-speed-v1 to these credentials \(GROUP_AUTHORIZATION_FAILED\)/);
    expect(fatalLogError(protocolError(14), 'b1:9093', 'x')).toBeUndefined();
  });

  it('recognizes fences and unknown topics through wrapping', () => {
    const wrapped = new InfrastructureError('Kafka commit transaction failed', { cause: protocolError(47) });
    expect(isProducerFenced(wrapped)).toBe(true);
    expect(isProducerFenced(protocolError(14))).toBe(false);
    expect(mentionsMissingTopic(new kafkajsErrors.KafkaJSNumberOfRetriesExceeded!(protocolError(3), { retryCount: 5, retryTime: 1 }))).toBe(
      true,
    );
  });
});

describe('Backoff', () => {
  it('doubles from 250 ms to a 30 s cap, each delay within its jitter', () => {
    const low = new Backoff({ random: () => 0 });
    const high = new Backoff({ random: () => 1 });
    const base = [250, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000];
    for (const b of base) {
      expect(low.next()).toBe(Math.round(b * 0.8));
      expect(high.next()).toBe(Math.min(30_000, Math.round(b * 1.2)));
    }
    low.reset();
    expect(low.next()).toBe(200);
  });
});
