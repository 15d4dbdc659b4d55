/**
 * `--kafka-config FILE` (env LK_KAFKA_CONFIG): the Java client properties file that users already
 * hand to Kafka's own tools (`--command-config`, `--consumer.config`), read into the settings
 * the Kafka adapter connects with. One file serves both.
 *
 * The keys lk reads are declared once, in `KEYS` below, with their meaning (the README's table
 * restates it). Every other key, and every key that does not apply to the chosen
 * security.protocol, is reported once as not used (one log line, key names only). Values are
 * trimmed, as Kafka's ConfigDef does. Relative store paths are resolved against the working
 * directory, as the Java client does. Errors are ConfigErrors naming the file, the line and the
 * key; no message, log line or thrown value ever holds a password or a key (they are Secrets).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { z } from 'zod';
import { Secret } from '../../config/secret.ts';
import { ConfigError, errorMessage } from '../../errors.ts';
import { logger } from '../../observability/logger.ts';
import { JaasSyntaxError, PLAIN_LOGIN_MODULE, SCRAM_LOGIN_MODULE, parseJaasConfig } from './jaasConfig.ts';
import { decodePropertiesFile, parseJavaProperties, type PropertyEntry } from './javaProperties.ts';
import {
  identityFromPemText,
  readKeyStore,
  readTrustStore,
  trustFromPemText,
  type ClientIdentity,
  type PropertyRef,
  type TrustedCertificates,
} from './keyStores.ts';

export const SECURITY_PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'] as const;
export type SecurityProtocol = (typeof SECURITY_PROTOCOLS)[number];
export const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

/** Every key lk reads, and when it applies. */
export const KEYS = {
  'bootstrap.servers': 'brokers to start from, when --brokers/KAFKA_BROKERS is not given',
  'client.id': 'the client id the brokers see (quotas, logs); default: one per lk command, such as lk-speed-<instance>',
  'security.protocol': 'PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL',
  'sasl.mechanism': 'SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512',
  'sasl.jaas.config': 'SASL_*: PlainLoginModule or ScramLoginModule with username="..." password="...";',
  'ssl.truststore.location': "SSL, SASL_SSL: the CAs to trust (default: Node's built-in CAs)",
  'ssl.truststore.type': 'PEM or PKCS12 (default: from the file; JKS holding PKCS12 is read as PKCS12)',
  'ssl.truststore.password': 'a PKCS12 trust store',
  'ssl.truststore.certificates': 'instead of ssl.truststore.location: PEM certificates inline (type PEM)',
  'ssl.keystore.location': 'mutual TLS: the client certificate and key (PEM: key and chain in one file; or PKCS12)',
  'ssl.keystore.type': 'PEM or PKCS12 (default: from the file)',
  'ssl.keystore.password': 'a PKCS12 key store',
  'ssl.key.password': "the private key's password (an encrypted PEM key; a PKCS12 key with its own password)",
  'ssl.keystore.certificate.chain': 'instead of ssl.keystore.location: the PEM chain inline (with ssl.keystore.key)',
  'ssl.keystore.key': 'instead of ssl.keystore.location: the PEM private key inline',
  'ssl.endpoint.identification.algorithm': 'https (default): check the broker certificate names the host; empty: do not',
} as const;
type Key = keyof typeof KEYS;

const SASL_KEYS: Key[] = ['sasl.mechanism', 'sasl.jaas.config'];
const TLS_KEYS = (Object.keys(KEYS) as Key[]).filter((k) => k.startsWith('ssl.'));

export interface SaslSettings {
  mechanism: SaslMechanism;
  username: string;
  password: Secret;
}

export interface TlsSettings {
  /** The CAs to trust; undefined: Node's built-in CAs. */
  trusted: TrustedCertificates | undefined;
  /** The client certificate for mutual TLS. */
  identity: ClientIdentity | undefined;
  /** ssl.endpoint.identification.algorithm=https (the default). */
  checkHostname: boolean;
}

/** How the client connects: what KafkaLog and the connection diagnosis use. */
export interface KafkaSecurity {
  protocol: SecurityProtocol;
  tls: TlsSettings | undefined;
  sasl: SaslSettings | undefined;
  /** Where the settings come from, for messages: "--kafka-config client.properties". */
  source: string;
}

export const PLAINTEXT_SECURITY: KafkaSecurity = {
  protocol: 'PLAINTEXT',
  tls: undefined,
  sasl: undefined,
  source: 'no --kafka-config given',
};

export interface KafkaClientConfig {
  file: string;
  /** bootstrap.servers with where it was set, for messages. */
  bootstrapServers: { value: string; where: string } | undefined;
  clientId: string | undefined;
  security: KafkaSecurity;
  /** Keys present in the file that lk does not use (reported once). */
  unusedKeys: string[];
}

/** Node TLS options for kafkajs's `ssl` and the connection diagnosis. */
export function tlsConnectionOptions(tls: TlsSettings): ConnectionOptions {
  return {
    ...(tls.trusted ? { ca: tls.trusted.pem } : {}),
    ...(tls.identity ? { cert: tls.identity.certChain, key: tls.identity.key.reveal() } : {}),
    // Java's endpoint identification "https" is Node's default check (RFC 2818/6125 names and IPs).
    ...(tls.checkHostname ? {} : { checkServerIdentity: () => undefined }),
  };
}

/** "trusting CN=corp-ca" or "trusting Node's built-in CAs": what the client trusts, for messages. */
export function describeTrust(tls: TlsSettings | undefined): string {
  if (!tls?.trusted) return "trusting Node's built-in CAs";
  return `trusting ${tls.trusted.subjects.join('; ')}`;
}

const enumError = (allowed: readonly string[]) => (issue: { input?: unknown }) =>
  `expected ${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}, got ${JSON.stringify(issue.input)}`;

/** The file's values as zod checks them; cross-key rules follow in `interpret`. */
const RawConfig = z.object({
  'bootstrap.servers': z.string().min(1, 'is empty').optional(),
  'client.id': z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/, 'must be 1 to 255 printable ASCII characters without spaces')
    .optional(),
  'security.protocol': z
    .string()
    .transform((s) => s.toUpperCase())
    .pipe(z.enum(SECURITY_PROTOCOLS, { error: enumError(SECURITY_PROTOCOLS) }))
    .default('PLAINTEXT'),
  'ssl.endpoint.identification.algorithm': z
    .string()
    .transform((s) => s.toLowerCase())
    .pipe(z.enum(['', 'https'], { error: (issue) => `expected https or empty (no host-name check), got ${JSON.stringify(issue.input)}` }))
    .default('https'),
});

/** Checked only under SASL_* (the Java client ignores sasl.mechanism otherwise). */
const SaslMechanismValue = z.enum(SASL_MECHANISMS, {
  error: (issue) =>
    `${JSON.stringify(issue.input)} is not supported: use ${SASL_MECHANISMS.join(', ')} (GSSAPI, OAUTHBEARER and AWS_MSK_IAM are not supported)`,
});

function fail(file: string, entry: PropertyEntry | undefined, key: string, message: string): never {
  throw new ConfigError(`${file}${entry ? `:${entry.line}` : ''}: ${key}: ${message}`);
}

function readStoreFile(file: string, location: PropertyRef, path: string): Buffer {
  try {
    return readFileSync(resolve(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      `${location.where}: ${location.key}: cannot read ${path} (${code ?? errorMessage(err)}) (--kafka-config ${file})`,
    );
  }
}

/** Reads the settings of `entries` (a parsed properties file): validation and meaning. */
export function interpretKafkaClientConfig(file: string, entries: Map<string, PropertyEntry>): KafkaClientConfig {
  const values = Object.fromEntries([...entries].map(([k, e]) => [k, e.value.trim()]));
  const parsed = RawConfig.safeParse(values);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    fail(file, entries.get(key), key, issue.message);
  }
  const raw = parsed.data;
  const at = (key: Key): PropertyRef => ({ key, where: `${file}${entries.has(key) ? `:${entries.get(key)!.line}` : ''}` });
  const value = (key: Key): string | undefined => {
    const v = values[key];
    return v === undefined || v === '' ? undefined : v;
  };
  const secret = (key: Key): Secret | undefined => {
    const v = value(key);
    return v === undefined ? undefined : new Secret(v);
  };
  const protocol = raw['security.protocol'];
  const usesSasl = protocol.startsWith('SASL_');
  const usesTls = protocol === 'SSL' || protocol === 'SASL_SSL';
  const used = new Set<string>(['bootstrap.servers', 'client.id', 'security.protocol']);

  let sasl: SaslSettings | undefined;
  if (usesSasl) {
    for (const k of SASL_KEYS) used.add(k);
    const mechanismText = value('sasl.mechanism');
    if (mechanismText === undefined) {
      fail(
        file,
        undefined,
        'sasl.mechanism',
        `security.protocol=${protocol} needs sasl.mechanism: Kafka's default, GSSAPI (Kerberos), is not supported; set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`,
      );
    }
    const checked = SaslMechanismValue.safeParse(mechanismText);
    if (!checked.success) fail(file, entries.get('sasl.mechanism'), 'sasl.mechanism', checked.error.issues[0]!.message);
    const mechanism = checked.data;
    const jaasEntry = entries.get('sasl.jaas.config');
    const expectedModule = mechanism === 'PLAIN' ? PLAIN_LOGIN_MODULE : SCRAM_LOGIN_MODULE;
    if (value('sasl.jaas.config') === undefined) {
      fail(
        file,
        jaasEntry,
        'sasl.jaas.config',
        `security.protocol=${protocol} needs sasl.jaas.config: ${expectedModule} required username="..." password="...";`,
      );
    }
    let jaas;
    try {
      jaas = parseJaasConfig(values['sasl.jaas.config']!);
    } catch (err) {
      if (err instanceof JaasSyntaxError)
        fail(file, jaasEntry, 'sasl.jaas.config', `${err.message} (expected ${expectedModule} required username="..." password="...";)`);
      throw err;
    }
    if (jaas.loginModule !== expectedModule) {
      fail(
        file,
        jaasEntry,
        'sasl.jaas.config',
        `sasl.mechanism=${mechanism} needs the login module ${expectedModule}, not ${jaas.loginModule}`,
      );
    }
    const username = jaas.options.get('username')?.reveal();
    const password = jaas.options.get('password');
    if (!username) fail(file, jaasEntry, 'sasl.jaas.config', 'has no username="..."');
    if (!password || password.reveal() === '') fail(file, jaasEntry, 'sasl.jaas.config', 'has no password="..."');
    sasl = { mechanism, username, password };
  }

  let tls: TlsSettings | undefined;
  if (usesTls) {
    used.add('ssl.endpoint.identification.algorithm');
    let trusted: TrustedCertificates | undefined;
    const trustPath = value('ssl.truststore.location');
    const inlineTrust = value('ssl.truststore.certificates');
    if (trustPath !== undefined && inlineTrust !== undefined) {
      fail(
        file,
        entries.get('ssl.truststore.certificates'),
        'ssl.truststore.certificates',
        'cannot be set together with ssl.truststore.location: keep one',
      );
    }
    if (trustPath !== undefined) {
      used.add('ssl.truststore.location').add('ssl.truststore.type');
      const location = at('ssl.truststore.location');
      trusted = readTrustStore({
        bytes: readStoreFile(file, location, trustPath),
        path: trustPath,
        declaredType: value('ssl.truststore.type'),
        password: secret('ssl.truststore.password'),
        location,
      });
      // Kafka refuses a password for a PEM trust store; lk reports it as unused.
      if (trusted.type === 'PKCS12') used.add('ssl.truststore.password');
    } else if (inlineTrust !== undefined) {
      used.add('ssl.truststore.certificates').add('ssl.truststore.type');
      trusted = trustFromPemText(inlineTrust, at('ssl.truststore.certificates'));
    }

    let identity: ClientIdentity | undefined;
    const keyPath = value('ssl.keystore.location');
    const inlineChain = value('ssl.keystore.certificate.chain');
    const inlineKey = value('ssl.keystore.key');
    if (keyPath !== undefined && (inlineChain !== undefined || inlineKey !== undefined)) {
      fail(
        file,
        entries.get('ssl.keystore.location'),
        'ssl.keystore.location',
        'cannot be set together with ssl.keystore.certificate.chain or ssl.keystore.key: keep one form',
      );
    }
    if (keyPath !== undefined) {
      used.add('ssl.keystore.location').add('ssl.keystore.type').add('ssl.key.password');
      const location = at('ssl.keystore.location');
      identity = readKeyStore({
        bytes: readStoreFile(file, location, keyPath),
        path: keyPath,
        declaredType: value('ssl.keystore.type'),
        storePassword: secret('ssl.keystore.password'),
        keyPassword: secret('ssl.key.password'),
        location,
      });
      // A PEM key store has no store password (Kafka refuses one): only ssl.key.password.
      if (identity.type === 'PKCS12') used.add('ssl.keystore.password');
    } else if (inlineChain !== undefined || inlineKey !== undefined) {
      if (inlineChain === undefined || inlineKey === undefined) {
        const missing = inlineChain === undefined ? 'ssl.keystore.certificate.chain' : 'ssl.keystore.key';
        fail(file, undefined, missing, 'is needed with ssl.keystore.certificate.chain and ssl.keystore.key: set both');
      }
      for (const k of ['ssl.keystore.certificate.chain', 'ssl.keystore.key', 'ssl.keystore.type', 'ssl.key.password'] as const) used.add(k);
      identity = identityFromPemText(inlineChain, inlineKey, secret('ssl.key.password'), at('ssl.keystore.key'));
    }
    tls = { trusted, identity, checkHostname: raw['ssl.endpoint.identification.algorithm'] === 'https' };
  }

  return {
    file,
    bootstrapServers:
      raw['bootstrap.servers'] !== undefined ? { value: raw['bootstrap.servers'], where: at('bootstrap.servers').where } : undefined,
    clientId: raw['client.id'],
    security: { protocol, tls, sasl, source: `--kafka-config ${file}` },
    unusedKeys: [...entries.keys()].filter((k) => !used.has(k)).sort(),
  };
}

/** Why a key lk knows is unused; other keys are simply unknown to lk. */
function unusedReason(key: string, protocol: SecurityProtocol): string {
  if ((SASL_KEYS as string[]).includes(key) && !protocol.startsWith('SASL_'))
    return `${key} (security.protocol=${protocol} does not use SASL)`;
  if ((TLS_KEYS as string[]).includes(key) && !protocol.endsWith('SSL')) return `${key} (security.protocol=${protocol} does not use TLS)`;
  if (/password$/.test(key)) return `${key} (not used with this store, or by a PEM store)`;
  if ((KEYS as Record<string, string>)[key] !== undefined) return `${key} (another key given beside it takes its place)`;
  return key;
}

const loaded = new Map<string, KafkaClientConfig>();

/**
 * Reads, validates and interprets `file` (once per process: every Kafka client of a command
 * shares it), and logs once which of its keys are not used.
 */
export function loadKafkaClientConfig(file: string): KafkaClientConfig {
  const path = resolve(file);
  const cached = loaded.get(path);
  if (cached) return cached;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot read the Kafka client config ${file} (--kafka-config/LK_KAFKA_CONFIG): ${code ?? errorMessage(err)}`);
  }
  const config = interpretKafkaClientConfig(file, parseJavaProperties(decodePropertiesFile(bytes), file));
  if (config.unusedKeys.length > 0) {
    logger.warn(
      { kafkaConfig: file, unusedKeys: config.unusedKeys },
      `Kafka client config ${file}: not used by lk: ${config.unusedKeys.map((k) => unusedReason(k, config.security.protocol)).join(', ')}`,
    );
  }
  loaded.set(path, config);
  return config;
}
