/**
 * `--kafka-config FILE`: a Java client properties file read into the Kafka adapter's security
 * settings, with certificates and stores made by openssl and keytool for the test
 * (test/testPki.ts). It proves that
 * - every supported key has its meaning: the protocols, the SASL mechanisms with the user and
 *   password from sasl.jaas.config, PEM and PKCS12 trust and key stores (a PKCS12 trust store made
 *   by keytool, a PKCS12 key store made by openssl, an encrypted PEM key), inline PEM, the
 *   host-name check, client.id, bootstrap.servers;
 * - every mistake is refused with the file, the line and the key, and no message holds a
 *   password (the test knows every secret and greps each message for it);
 * - unused keys are reported once, by name only.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Secret } from '../../config/secret.ts';
import { ConfigError } from '../../errors.ts';
import { logger } from '../../observability/logger.ts';
import { loadKafkaClientConfig, tlsConnectionOptions, type KafkaClientConfig } from '../kafka/kafkaClientConfig.ts';
import { tempDir } from '../../../test/helpers.ts';
import { jaas, propertyLine } from '../../../test/securedKafka.ts';
import { makeTestPki, type TestPki } from '../../../test/testPki.ts';

const PASSWORD = 'sup3r-s3cret=pa:ss';
const dir = tempDir('lk-kafka-config-');
let pki: TestPki;
let count = 0;

beforeAll(() => {
  pki = makeTestPki(dir.path);
});
afterAll(() => dir.remove());

/** Writes `text` as a properties file of its own (each load is then fresh) and loads it. */
function load(text: string): KafkaClientConfig {
  const file = join(dir.path, `client-${++count}.properties`);
  writeFileSync(file, text, 'latin1');
  return loadKafkaClientConfig(file);
}

const lines = (entries: Record<string, string>): string =>
  Object.entries(entries)
    .map(([k, v]) => propertyLine(k, v))
    .join('\n') + '\n';

const saslSsl = (extra: Record<string, string> = {}): Record<string, string> => ({
  'security.protocol': 'SASL_SSL',
  'sasl.mechanism': 'SCRAM-SHA-512',
  'sasl.jaas.config': jaas('alice', PASSWORD),
  'ssl.truststore.location': pki.caPem,
  ...extra,
});

describe('--kafka-config: what each key means', () => {
  it('reads a SASL_SSL file in every form of the format, with the user and password from sasl.jaas.config', () => {
    const c = load(
      [
        '# a client file as users write it',
        '! comments either way',
        'bootstrap.servers = 127.0.0.1:9093,127.0.0.1:9094',
        'security.protocol: sasl_ssl',
        'sasl.mechanism SCRAM-SHA-256',
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\',
        '    username="alice" \\',
        `    password="${PASSWORD.replace(/[=:]/g, (m) => `\\${m}`)}";`,
        `ssl.truststore.location=${pki.caPem}`,
        'client.id=analytics-lk',
        'linger.ms=5',
        'acks=all',
      ].join('\n'),
    );
    expect(c.bootstrapServers?.value).toBe('127.0.0.1:9093,127.0.0.1:9094');
    expect(c.bootstrapServers?.where).toMatch(/client-\d+\.properties:3$/);
    expect(c.clientId).toBe('analytics-lk');
    expect(c.security.protocol).toBe('SASL_SSL');
    expect(c.security.sasl?.mechanism).toBe('SCRAM-SHA-256');
    expect(c.security.sasl?.username).toBe('alice');
    expect(c.security.sasl?.password.reveal()).toBe(PASSWORD);
    expect(c.security.tls?.trusted?.subjects).toEqual(['CN=lk-test-ca']);
    expect(c.security.tls?.identity).toBeUndefined();
    expect(c.security.tls?.checkHostname).toBe(true);
    expect(c.unusedKeys).toEqual(['acks', 'linger.ms']);
  });

  it('reads PLAIN, and the protocols without SASL or TLS, reporting the keys they do not use', () => {
    const plain = load(
      lines({
        'security.protocol': 'SASL_PLAINTEXT',
        'sasl.mechanism': 'PLAIN',
        'sasl.jaas.config': `org.apache.kafka.common.security.plain.PlainLoginModule required username='bob' password=${'w0rd'};`,
        'ssl.truststore.location': pki.caPem,
      }),
    );
    expect(plain.security).toMatchObject({ protocol: 'SASL_PLAINTEXT', tls: undefined, sasl: { mechanism: 'PLAIN', username: 'bob' } });
    expect(plain.security.sasl?.password.reveal()).toBe('w0rd');
    expect(plain.unusedKeys).toEqual(['ssl.truststore.location']);
    const none = load(lines({ 'sasl.mechanism': 'GSSAPI', 'ssl.keystore.location': '/nowhere' }));
    expect(none.security).toMatchObject({ protocol: 'PLAINTEXT', tls: undefined, sasl: undefined });
    expect(none.unusedKeys).toEqual(['sasl.mechanism', 'ssl.keystore.location']);
    const ssl = load(lines({ 'security.protocol': 'SSL' }));
    expect(ssl.security.tls).toEqual({ trusted: undefined, identity: undefined, checkHostname: true });
  });

  it('reads PKCS12 stores: a trust store made by keytool, a key store made by openssl (RSA key)', () => {
    const c = load(
      lines({
        'security.protocol': 'SSL',
        'ssl.truststore.location': pki.truststoreP12,
        'ssl.truststore.type': 'PKCS12',
        'ssl.truststore.password': pki.storePassword,
        'ssl.keystore.location': pki.clientKeystoreP12,
        'ssl.keystore.type': 'PKCS12',
        'ssl.keystore.password': pki.storePassword,
      }),
    );
    expect(c.security.tls?.trusted?.subjects).toEqual(['CN=lk-test-ca']);
    expect(c.security.tls?.identity?.subject).toBe('CN=lk-test-client-rsa');
    // The chain starts with the client's own certificate and holds the CA after it.
    const chain = c.security.tls!.identity!.certChain.match(/-----BEGIN CERTIFICATE-----/g);
    expect(chain).toHaveLength(2);
    const opts = tlsConnectionOptions(c.security.tls!);
    expect(String(opts.key)).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(opts.checkServerIdentity).toBeUndefined();
    expect(c.unusedKeys).toEqual([]);
  });

  it('reads a PEM key store with an encrypted key, stores without a declared type, and JKS naming PKCS12 bytes', () => {
    const c = load(
      lines({
        'security.protocol': 'SSL',
        'ssl.truststore.location': pki.truststoreP12, // no type: the bytes say PKCS12
        'ssl.truststore.password': pki.storePassword,
        'ssl.keystore.location': pki.clientKeystorePem,
        'ssl.keystore.type': 'PEM',
        'ssl.key.password': pki.keyPassword,
        'ssl.endpoint.identification.algorithm': '',
      }),
    );
    expect(c.security.tls?.identity?.subject).toBe('CN=lk-test-client');
    expect(c.security.tls?.checkHostname).toBe(false);
    expect(tlsConnectionOptions(c.security.tls!).checkServerIdentity?.('x', {} as never)).toBeUndefined();
    const jks = load(
      lines({
        'security.protocol': 'SSL',
        'ssl.truststore.location': pki.truststoreP12,
        'ssl.truststore.type': 'JKS',
        'ssl.truststore.password': pki.storePassword,
      }),
    );
    expect(jks.security.tls?.trusted?.subjects).toEqual(['CN=lk-test-ca']);
  });

  it('reads inline PEM: ssl.truststore.certificates, ssl.keystore.certificate.chain and ssl.keystore.key', () => {
    const chain = readFileSync(join(pki.dir, 'client.crt'), 'utf8');
    const key = readFileSync(join(pki.dir, 'client.key'), 'utf8');
    const c = load(
      lines({
        'security.protocol': 'SSL',
        'ssl.truststore.type': 'PEM',
        'ssl.truststore.certificates': readFileSync(pki.caPem, 'utf8'),
        'ssl.keystore.type': 'PEM',
        'ssl.keystore.certificate.chain': chain,
        'ssl.keystore.key': key,
      }),
    );
    expect(c.security.tls?.trusted?.subjects).toEqual(['CN=lk-test-ca']);
    expect(c.security.tls?.identity?.subject).toBe('CN=lk-test-client');
  });

  it('keeps passwords in Secrets that print as [secret] everywhere', () => {
    const c = load(lines(saslSsl()));
    const shown = [String(c.security.sasl?.password), JSON.stringify(c), inspect(c, { depth: 10 }), `${c.security.sasl!.password}`];
    for (const s of shown) expect(s).not.toContain(PASSWORD);
    expect(JSON.stringify(new Secret('x'))).toBe('"[secret]"');
  });

  it('reports the unused keys once per file and process, by name only', () => {
    const warn = vi.spyOn(logger, 'warn');
    try {
      const file = join(dir.path, 'once.properties');
      writeFileSync(file, lines(saslSsl({ 'ssl.truststore.password': PASSWORD, retries: '3' })));
      loadKafkaClientConfig(file);
      loadKafkaClientConfig(file);
      const calls = warn.mock.calls.filter((call) => String(call[1]).includes(file));
      expect(calls).toHaveLength(1);
      expect(String(calls[0]![1])).toContain('not used by lk: retries, ssl.truststore.password');
      expect(JSON.stringify(calls[0])).not.toContain(PASSWORD);
    } finally {
      warn.mockRestore();
    }
  });
});

describe('--kafka-config: mistakes are refused with the file, the line and the key, never a secret', () => {
  const jks = () => {
    const path = join(dir.path, 'trust.jks');
    const r = spawnSync('keytool', [
      '-importcert',
      '-noprompt',
      '-alias',
      'ca',
      '-file',
      pki.caPem,
      '-keystore',
      path,
      '-storetype',
      'JKS',
      '-storepass',
      PASSWORD,
    ]);
    if (r.status !== 0) throw new Error(String(r.stderr));
    return path;
  };
  const cases: [string, () => string, RegExp][] = [
    [
      'an unknown protocol',
      () => lines({ 'security.protocol': 'SASL-SSL' }),
      /:1: security\.protocol: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got "SASL-SSL"$/,
    ],
    [
      'SASL without a mechanism',
      () => lines({ ...saslSsl(), 'sasl.mechanism': '' }),
      /: sasl\.mechanism: security\.protocol=SASL_SSL needs sasl\.mechanism: Kafka's default, GSSAPI \(Kerberos\), is not supported/,
    ],
    [
      'an unsupported mechanism',
      () => lines(saslSsl({ 'sasl.mechanism': 'OAUTHBEARER' })),
      /:2: sasl\.mechanism: "OAUTHBEARER" is not supported: use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512/,
    ],
    [
      'SASL without sasl.jaas.config',
      () => lines({ ...saslSsl(), 'sasl.jaas.config': '' }),
      /:3: sasl\.jaas\.config: security\.protocol=SASL_SSL needs sasl\.jaas\.config: org\.apache\.kafka\.common\.security\.scram\.ScramLoginModule required/,
    ],
    [
      'an unterminated quote',
      () => lines(saslSsl({ 'sasl.jaas.config': jaas('alice', PASSWORD).replace(/";$/, ';') })),
      /:3: sasl\.jaas\.config: an unterminated quoted value/,
    ],
    [
      'the login module of another mechanism',
      () => lines(saslSsl({ 'sasl.mechanism': 'PLAIN' })),
      /:3: sasl\.jaas\.config: sasl\.mechanism=PLAIN needs the login module org\.apache\.kafka\.common\.security\.plain\.PlainLoginModule, not org\.apache\.kafka\.common\.security\.scram\.ScramLoginModule$/,
    ],
    [
      'no password',
      () => lines(saslSsl({ 'sasl.jaas.config': jaas('alice', PASSWORD).replace(/ password="[^"]*"/, '') })),
      /:3: sasl\.jaas\.config: has no password="\.\.\."$/,
    ],
    [
      'two login modules',
      () => lines(saslSsl({ 'sasl.jaas.config': jaas('alice', PASSWORD) + ' ' + jaas('bob', PASSWORD) })),
      /:3: sasl\.jaas\.config: holds more than one login module/,
    ],
    [
      'a missing trust store',
      () => lines(saslSsl({ 'ssl.truststore.location': '/no/such/ca.pem' })),
      /:4: ssl\.truststore\.location: cannot read \/no\/such\/ca\.pem \(ENOENT\)/,
    ],
    [
      'a wrong trust store password',
      () => lines({ 'security.protocol': 'SSL', 'ssl.truststore.location': pki.truststoreP12, 'ssl.truststore.password': PASSWORD }),
      /:2: ssl\.truststore\.location \(.*truststore\.p12\): the store does not open with ssl\.truststore\.password \(wrong or missing password\)$/,
    ],
    [
      'a wrong key store password',
      () => lines({ 'security.protocol': 'SSL', 'ssl.keystore.location': pki.clientKeystoreP12, 'ssl.keystore.password': PASSWORD }),
      /:2: ssl\.keystore\.location \(.*client\.p12\): the store does not open with ssl\.keystore\.password/,
    ],
    [
      'an encrypted PEM key without ssl.key.password',
      () => lines({ 'security.protocol': 'SSL', 'ssl.keystore.location': pki.clientKeystorePem }),
      /:2: ssl\.keystore\.location \(.*\): the private key is encrypted: set ssl\.key\.password$/,
    ],
    [
      'a wrong ssl.key.password',
      () => lines({ 'security.protocol': 'SSL', 'ssl.keystore.location': pki.clientKeystorePem, 'ssl.key.password': PASSWORD }),
      /: ssl\.key\.password does not decrypt the private key$/,
    ],
    [
      'PEM declared, PKCS12 given',
      () => lines({ 'security.protocol': 'SSL', 'ssl.truststore.location': pki.truststoreP12, 'ssl.truststore.type': 'PEM' }),
      /ssl\.truststore\.type is PEM but .*truststore\.p12 is not PEM text \(it looks like PKCS12\): set ssl\.truststore\.type=PKCS12$/,
    ],
    [
      'a JKS store',
      () => lines({ 'security.protocol': 'SSL', 'ssl.truststore.location': jks(), 'ssl.truststore.password': PASSWORD }),
      /trust\.jks is a JKS store, which lk cannot read: convert it with `keytool -importkeystore .* -deststoretype PKCS12` and set ssl\.truststore\.type=PKCS12$/,
    ],
    [
      'an unsupported store type',
      () => lines({ 'security.protocol': 'SSL', 'ssl.truststore.location': pki.caPem, 'ssl.truststore.type': 'BCFKS' }),
      /ssl\.truststore\.type: BCFKS is not supported: use PEM or PKCS12$/,
    ],
    [
      'another host-name check',
      () => lines({ 'security.protocol': 'SSL', 'ssl.endpoint.identification.algorithm': 'LDAPS' }),
      /:2: ssl\.endpoint\.identification\.algorithm: expected https or empty \(no host-name check\), got "ldaps"$/,
    ],
    [
      'two trust stores',
      () =>
        lines({
          'security.protocol': 'SSL',
          'ssl.truststore.location': pki.caPem,
          'ssl.truststore.certificates': readFileSync(pki.caPem, 'utf8'),
        }),
      /:3: ssl\.truststore\.certificates: cannot be set together with ssl\.truststore\.location/,
    ],
    [
      'a key without its chain',
      () => lines({ 'security.protocol': 'SSL', 'ssl.keystore.key': readFileSync(join(pki.dir, 'client.key'), 'utf8') }),
      /: ssl\.keystore\.certificate\.chain: is needed with ssl\.keystore\.certificate\.chain and ssl\.keystore\.key/,
    ],
    [
      'a client id with spaces',
      () => lines({ 'client.id': 'my client' }),
      /:1: client\.id: must be 1 to 255 printable ASCII characters without spaces$/,
    ],
    ['a malformed \\u escape', () => `security.protocol=SSL\nsasl.jaas.config=x\\u12zz\n`, /:2: malformed \\uXXXX escape/],
  ];

  it.each(cases)('%s', (_what, text, message) => {
    let err: unknown;
    try {
      load(text());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^\/.*client-\d+\.properties(:\d+)?: /);
    expect(msg).toMatch(message);
    expect(msg.split('\n')).toHaveLength(1);
    for (const secret of [PASSWORD, pki.storePassword, pki.keyPassword]) expect(msg).not.toContain(secret);
  });

  it('says when the file cannot be read', () => {
    expect(() => loadKafkaClientConfig('/no/such/client.properties')).toThrow(
      /^cannot read the Kafka client config \/no\/such\/client\.properties \(--kafka-config\/LK_KAFKA_CONFIG\): ENOENT$/,
    );
  });
});
