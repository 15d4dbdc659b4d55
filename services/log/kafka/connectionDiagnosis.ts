/**
 * Why a Kafka client could not connect, when kafkajs cannot say: against a listener of another
 * protocol it reports "Closed connection" (or a TLS reset) and keeps retrying. After a failed
 * connect, the adapter asks `explainConnectFailure`, which
 *  1. names a SASL refusal that kafkajs did report (wrong password, mechanism not enabled,
 *     SASL on a listener without it), and otherwise
 *  2. probes the bootstrap brokers with a few bytes of Kafka's own protocol, in the steps below,
 *     and names the first mismatch between the client's settings and the listener.
 * It returns undefined when it finds nothing (the broker is down, say): the caller keeps its own
 * message. Every step is bounded (STEP_TIMEOUT_MS); the probe never hangs.
 *
 * The probe's steps, per broker, in this order:
 *
 *   client uses TLS?
 *     yes: TLS handshake with the client's own settings, certificate checks done here:
 *            reset / wrong version ──> plaintext ApiVersions answered? ──> TlsClientOnPlaintextListener
 *            peer certificate not trusted ─────────────────────────────> UntrustedCertificate
 *            peer certificate names another host (check on) ───────────> HostnameMismatch
 *            TLS alert (certificate required, bad certificate, ...) ───> ClientCertificate
 *          then ApiVersions over TLS (a TLS 1.3 server refuses a client certificate only now):
 *            TLS alert ────────────────────────────────────────────────> ClientCertificate
 *     no:  ApiVersions in plaintext; not answered ──> TLS handshake completes? ──> PlaintextClientOnTlsListener
 *   SaslHandshake on the same connection:
 *     ILLEGAL_SASL_STATE (no SASL here) and the client uses SASL ─────> SaslNotEnabled
 *     mechanisms listed and the client does not use SASL ─────────────> SaslRequired
 *     the client's mechanism not among them ──────────────────────────> SaslMechanismNotEnabled
 *   otherwise (no connection at all, say) ─────────────────────────────> nothing to add
 *
 * The requests are ApiVersions v0 and SaslHandshake v1 with request header v1, which every
 * broker since 0.10 answers before authentication (KIP-35, KIP-43).
 */
import type { Socket } from 'node:net';
import { connect as netConnect, isIP } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { describeTrust, tlsConnectionOptions, type KafkaSecurity } from './kafkaClientConfig.ts';
import type { KafkaSecurityError } from './securityErrors.ts';
import {
  ClientCertificateError,
  HostnameMismatchError,
  PlaintextClientOnTlsListenerError,
  SaslAuthenticationError,
  SaslMechanismNotEnabledError,
  SaslNotEnabledError,
  SaslRequiredError,
  TlsClientOnPlaintextListenerError,
  UntrustedCertificateError,
} from './securityErrors.ts';

const STEP_TIMEOUT_MS = 5_000;
/** The whole probe, over every bootstrap broker: the failure is reported within this much more. */
const PROBE_TIMEOUT_MS = 15_000;
const PROBE_CLIENT_ID = 'lk-connection-probe';
const API_VERSIONS = 18;
const SASL_HANDSHAKE = 17;
const ILLEGAL_SASL_STATE = 34;
const UNSUPPORTED_SASL_MECHANISM = 33;

/** Readable causes for the verification codes OpenSSL gives Node. */
const VERIFY_REASONS: Record<string, string> = {
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in the chain',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the issuer of the certificate is not trusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the issuer of the certificate is not trusted',
  UNABLE_TO_GET_ISSUER_CERT: 'the issuer of the certificate is not trusted',
  CERT_HAS_EXPIRED: 'the certificate has expired',
  CERT_NOT_YET_VALID: 'the certificate is not valid yet',
  CERT_REVOKED: 'the certificate is revoked',
  CERT_SIGNATURE_FAILURE: 'the certificate signature does not verify',
  CERT_UNTRUSTED: 'the certificate is not trusted',
};

export interface Broker {
  host: string;
  port: number;
}

export function splitBroker(address: string): Broker {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(i + 1)) };
}

/** Step 1: what kafkajs did report. SASL errors carry their cause in kafkajs's own words. */
export function saslErrorFromKafkajs(err: unknown, where: string, security: KafkaSecurity): KafkaSecurityError | undefined {
  const chain: { name?: string; message?: string; type?: string }[] = [];
  for (
    let e = err as { name?: string; message?: string; type?: string; originalError?: unknown; cause?: unknown } | undefined;
    e && chain.length < 5;
  ) {
    chain.push(e);
    e = (e.originalError ?? e.cause) as typeof e;
  }
  const sasl = security.sasl;
  for (const e of chain) {
    const message = e.message ?? '';
    if (sasl && e.name === 'KafkaJSSASLAuthenticationError') {
      const notSupported = /SASL (\S+) mechanism is not supported by the server/.exec(message);
      if (notSupported) return undefined; // the probe lists the mechanisms the broker offers
      return new SaslAuthenticationError(where, sasl.username, sasl.mechanism, security.source, { cause: err });
    }
    if (sasl && e.type === 'ILLEGAL_SASL_STATE') return new SaslNotEnabledError(where, security.protocol, security.source, { cause: err });
  }
  return undefined;
}

/** One Kafka request frame: size, api key, version, correlation id, client id, body. */
function frame(apiKey: number, version: number, correlationId: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const client = Buffer.from(PROBE_CLIENT_ID);
  const header = Buffer.alloc(2 + 2 + 4 + 2);
  header.writeInt16BE(apiKey, 0);
  header.writeInt16BE(version, 2);
  header.writeInt32BE(correlationId, 4);
  header.writeInt16BE(client.length, 8);
  const size = Buffer.alloc(4);
  size.writeInt32BE(header.length + client.length + body.length);
  return Buffer.concat([size, header, client, body]);
}

function kafkaString(s: string): Buffer {
  const b = Buffer.from(s);
  const len = Buffer.alloc(2);
  len.writeInt16BE(b.length);
  return Buffer.concat([len, b]);
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error & { code?: string } };

/** A socket on which requests are sent and answers read one at a time, each step bounded. */
class ProbeSocket {
  private buffered = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private failure: (Error & { code?: string }) | undefined;
  private ended = false;

  constructor(readonly socket: Socket | TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.waiter?.();
    });
    socket.on('error', (e: Error & { code?: string }) => {
      this.failure ??= e;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
  }

  /** Sends `request` and reads the answer with `correlationId`: its body, or why there is none. */
  async request(request: Buffer, correlationId: number): Promise<Outcome<Buffer>> {
    this.socket.write(request);
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    for (;;) {
      if (this.buffered.length >= 4) {
        const size = this.buffered.readInt32BE(0);
        if (size < 4 || size > 1 << 20) return { ok: false, error: new Error(`not a Kafka answer (frame size ${size})`) };
        if (this.buffered.length >= 4 + size) {
          const answer = this.buffered.subarray(4, 4 + size);
          this.buffered = this.buffered.subarray(4 + size);
          if (answer.readInt32BE(0) !== correlationId) return { ok: false, error: new Error('not a Kafka answer (correlation id)') };
          return { ok: true, value: answer.subarray(4) };
        }
      }
      if (this.failure) return { ok: false, error: this.failure };
      if (this.ended) return { ok: false, error: new Error('connection closed') };
      const left = deadline - Date.now();
      if (left <= 0) return { ok: false, error: new Error('no answer') };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

function tcpConnect(broker: Broker): Promise<Outcome<ProbeSocket>> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: broker.host, port: broker.port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, error: new Error('connect timeout') });
    }, STEP_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve({ ok: true, value: new ProbeSocket(socket) });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      resolve({ ok: false, error });
    });
  });
}

interface TlsHandshake {
  probe: ProbeSocket;
  /** OpenSSL's verification error code, when the chain is not trusted. */
  verifyError: string | undefined;
  peer: PeerCertificate;
}

/**
 * A TLS handshake with the client's settings; the certificate checks are done by the caller, so
 * that the peer certificate can be named in the message.
 */
function tlsHandshake(broker: Broker, security: KafkaSecurity, verify: boolean): Promise<Outcome<TlsHandshake>> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: broker.host,
      port: broker.port,
      ...(isIP(broker.host) ? {} : { servername: broker.host }),
      ...(security.tls && verify ? tlsConnectionOptions(security.tls) : {}),
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, error: new Error('TLS handshake timeout') });
    }, STEP_TIMEOUT_MS);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const probe = new ProbeSocket(socket);
      const verifyError = socket.authorized ? undefined : String(socket.authorizationError ?? 'CERT_UNTRUSTED');
      resolve({ ok: true, value: { probe, verifyError, peer: socket.getPeerCertificate() } });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: false, error });
    });
  });
}

/** A TLS alert from the server during or right after the handshake: it refused our certificate (or its absence). */
function tlsAlert(error: { code?: string; message?: string }): string | undefined {
  const code = error.code ?? '';
  const m = /ALERT_(\w+)$/.exec(code);
  if (!m || !/CERTIFICATE|UNKNOWN_CA|HANDSHAKE_FAILURE|ACCESS_DENIED/.test(m[1]!)) return undefined;
  return m[1]!.toLowerCase().replace(/_/g, ' ');
}

const apiVersions = (probe: ProbeSocket): Promise<Outcome<Buffer>> => probe.request(frame(API_VERSIONS, 0, 1), 1);

/** Whether `broker` answers a Kafka request in plaintext. */
async function answersPlaintext(broker: Broker): Promise<boolean> {
  const tcp = await tcpConnect(broker);
  if (!tcp.ok) return false;
  try {
    return (await apiVersions(tcp.value)).ok;
  } finally {
    tcp.value.close();
  }
}

/** Whether `broker` completes a TLS handshake (whatever its certificate). */
async function speaksTls(broker: Broker, security: KafkaSecurity): Promise<boolean> {
  const handshake = await tlsHandshake(broker, security, false);
  if (handshake.ok) handshake.value.probe.close();
  return handshake.ok;
}

function peerName(peer: PeerCertificate): string | undefined {
  const subject = peer.subject as unknown as Record<string, string> | undefined;
  const issuer = peer.issuer as unknown as Record<string, string> | undefined;
  return issuer?.CN ? `CN=${issuer.CN}` : subject?.CN ? `CN=${subject.CN}` : undefined;
}

/** The SASL step, on a connection that speaks Kafka. */
async function saslStep(probe: ProbeSocket, where: string, security: KafkaSecurity): Promise<KafkaSecurityError | undefined> {
  const mechanism = security.sasl?.mechanism ?? 'PLAIN';
  const answer = await probe.request(frame(SASL_HANDSHAKE, 1, 2, kafkaString(mechanism)), 2);
  if (!answer.ok || answer.value.length < 2) return undefined;
  const error = answer.value.readInt16BE(0);
  if (error === ILLEGAL_SASL_STATE) {
    return security.sasl ? new SaslNotEnabledError(where, security.protocol, security.source) : undefined;
  }
  const enabled: string[] = [];
  if (answer.value.length >= 6) {
    const n = answer.value.readInt32BE(2);
    let at = 6;
    for (let i = 0; i < n && at + 2 <= answer.value.length; i++) {
      const len = answer.value.readInt16BE(at);
      enabled.push(answer.value.toString('utf8', at + 2, at + 2 + len));
      at += 2 + len;
    }
  }
  if (!security.sasl) return new SaslRequiredError(where, security.protocol, enabled, security.source);
  if (error === UNSUPPORTED_SASL_MECHANISM || !enabled.includes(mechanism)) {
    return new SaslMechanismNotEnabledError(where, mechanism, enabled, security.source);
  }
  return undefined;
}

/** Step 2 for one broker. */
async function probeBroker(broker: Broker, security: KafkaSecurity): Promise<KafkaSecurityError | undefined> {
  const where = `${broker.host}:${broker.port}`;
  if (!security.tls) {
    const plain = await tcpConnect(broker);
    if (!plain.ok) return undefined;
    try {
      if (!(await apiVersions(plain.value)).ok) {
        return (await speaksTls(broker, security))
          ? new PlaintextClientOnTlsListenerError(where, security.protocol, security.source)
          : undefined;
      }
      return await saslStep(plain.value, where, security);
    } finally {
      plain.value.close();
    }
  }
  const handshake = await tlsHandshake(broker, security, true);
  if (!handshake.ok) {
    const alert = tlsAlert(handshake.error);
    if (alert) return new ClientCertificateError(where, security.tls.identity !== undefined, alert, security.source);
    return (await answersPlaintext(broker)) ? new TlsClientOnPlaintextListenerError(where, security.protocol, security.source) : undefined;
  }
  const { probe, verifyError, peer } = handshake.value;
  try {
    if (verifyError) {
      const reason = VERIFY_REASONS[verifyError] ?? verifyError;
      return new UntrustedCertificateError(where, reason, peerName(peer), describeTrust(security.tls), security.source);
    }
    if (security.tls.checkHostname) {
      const mismatch = checkServerIdentity(broker.host, peer);
      if (mismatch) return new HostnameMismatchError(where, broker.host, peer.subjectaltname ?? '', security.source);
    }
    const answer = await apiVersions(probe);
    if (!answer.ok) {
      const alert = tlsAlert(answer.error);
      if (alert) return new ClientCertificateError(where, security.tls.identity !== undefined, alert, security.source);
      return undefined;
    }
    return await saslStep(probe, where, security);
  } finally {
    probe.close();
  }
}

/**
 * Names the cause of a failed connect (`err`, as kafkajs reported it) when the client's security
 * settings and the listener disagree; undefined when nothing is found.
 */
export async function explainConnectFailure(
  err: unknown,
  brokers: readonly string[],
  security: KafkaSecurity,
): Promise<KafkaSecurityError | undefined> {
  const reported = saslErrorFromKafkajs(err, brokers.join(','), security);
  if (reported) return reported;
  const probeAll = async (): Promise<KafkaSecurityError | undefined> => {
    for (const address of brokers) {
      try {
        const found = await probeBroker(splitBroker(address), security);
        if (found) {
          Object.defineProperty(found, 'cause', { value: err, enumerable: false });
          return found;
        }
      } catch {
        // The probe only adds detail: a failure of its own never hides the original error.
      }
    }
    return undefined;
  };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), PROBE_TIMEOUT_MS)));
  try {
    return await Promise.race([probeAll(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
