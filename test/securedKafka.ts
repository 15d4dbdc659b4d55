/**
 * A secured Apache Kafka broker of a test's own (scripts/kafka.mjs), on 127.0.0.1 with ports
 * from freePort(), and certificates made for it (test/testPki.ts):
 *   - PLAINTEXT (also inter-broker) and CONTROLLER, as every test broker has;
 *   - SASL_SSL with SCRAM-SHA-512, the user's credentials written at storage format time;
 *   - MTLS: SSL with ssl.client.auth=required, trusting only the test CA;
 *   - WRONGHOST: SSL whose certificate names another host than 127.0.0.1.
 * Each SSL listener has a Kafka PEM key store. Used by the secured-cluster tests and bench:speed.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startKafka, stopKafka } from '../scripts/kafka.mjs';
import { freePort } from './ports.ts';
import { makeTestPki, type TestPki } from './testPki.ts';

export const SCRAM_LOGIN_MODULE = 'org.apache.kafka.common.security.scram.ScramLoginModule';

export interface SecuredKafka {
  /** 'host:port' of each listener. */
  plaintext: string;
  saslSsl: string;
  mtls: string;
  wrongHost: string;
  pki: TestPki;
  user: string;
  /** The SCRAM password: tests grep every output for it. */
  password: string;
  home: string;
  /** Writes a Java client properties file in the test's directory and returns its path. */
  writeProperties(name: string, entries: Record<string, string>): string;
  /** Client properties for the SASL_SSL listener (PEM trust store), with `overrides` on top. */
  saslSslProperties(overrides?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
}

/** A value for a .properties file: backslashes, separators at the start and line breaks escaped. */
export function propertyLine(key: string, value: string): string {
  const escape = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
  return `${escape(key).replace(/([=: ])/g, '\\$1')}=${escape(value)}`;
}

export function jaas(user: string, password: string): string {
  return `${SCRAM_LOGIN_MODULE} required username="${user}" password="${password}";`;
}

export async function startSecuredKafka(dir: string, options: { heap?: string } = {}): Promise<SecuredKafka> {
  const pki = makeTestPki(dir);
  const port = await freePort(5); // PLAINTEXT, CONTROLLER, SASL_SSL, MTLS, WRONGHOST
  const [saslPort, mtlsPort, wrongPort] = [port + 2, port + 3, port + 4];
  const user = 'lk-user';
  const password = `pw-${randomBytes(9).toString('hex')}`;
  const home = join(dir, 'kafka');
  const tlsListener = (name: string, keystore: string) => ({
    [`listener.name.${name}.ssl.keystore.type`]: 'PEM',
    [`listener.name.${name}.ssl.keystore.location`]: keystore,
  });
  await startKafka({
    port,
    home,
    fresh: true,
    quiet: true,
    heap: options.heap ?? '384m',
    listeners: [
      { name: 'SASL_SSL', port: saslPort, protocol: 'SASL_SSL' },
      { name: 'MTLS', port: mtlsPort, protocol: 'SSL' },
      { name: 'WRONGHOST', port: wrongPort, protocol: 'SSL' },
    ],
    serverProperties: {
      'sasl.enabled.mechanisms': 'SCRAM-SHA-512',
      'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config': `${SCRAM_LOGIN_MODULE} required;`,
      ...tlsListener('sasl_ssl', pki.brokerKeystorePem),
      ...tlsListener('mtls', pki.brokerKeystorePem),
      'listener.name.mtls.ssl.client.auth': 'required',
      'listener.name.mtls.ssl.truststore.type': 'PEM',
      'listener.name.mtls.ssl.truststore.location': pki.caPem,
      ...tlsListener('wronghost', pki.wrongHostKeystorePem),
    },
    scram: [`SCRAM-SHA-512=[name=${user},password=${password}]`],
  });
  const saslSslProperties = (overrides: Record<string, string> = {}) => ({
    'security.protocol': 'SASL_SSL',
    'sasl.mechanism': 'SCRAM-SHA-512',
    'sasl.jaas.config': jaas(user, password),
    'ssl.truststore.type': 'PEM',
    'ssl.truststore.location': pki.caPem,
    ...overrides,
  });
  return {
    plaintext: `127.0.0.1:${port}`,
    saslSsl: `127.0.0.1:${saslPort}`,
    mtls: `127.0.0.1:${mtlsPort}`,
    wrongHost: `127.0.0.1:${wrongPort}`,
    pki,
    user,
    password,
    home,
    writeProperties(name, entries) {
      const path = join(dir, name);
      writeFileSync(
        path,
        `# written by the test\n${Object.entries(entries)
          .map(([k, v]) => propertyLine(k, v))
          .join('\n')}\n`,
      );
      return path;
    },
    saslSslProperties,
    stop: async () => void (await stopKafka({ port, home, quiet: true, graceMs: 10_000 })),
  };
}
