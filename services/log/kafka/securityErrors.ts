/**
 * Named errors for a client whose security settings do not fit the cluster: each class is one
 * cause, and its message is one line that names the cause and the fix. They are fatal: trying
 * again cannot help until someone changes the settings (or the broker's), so commands that ride
 * out broker outages stop on them at once (`isKafkaSecurityError`), with exit code 1
 * (InfrastructureError).
 *
 * `where` is the broker address; `settings` names where the client's settings come from (the
 * `--kafka-config` file, or "no --kafka-config" for a plaintext client). No message holds a
 * secret: user names and certificate names are not secrets, passwords and keys never appear.
 */
import { InfrastructureError } from '../../errors.ts';

export abstract class KafkaSecurityError extends InfrastructureError {
  /** Never retried: the same settings meet the same refusal. */
  readonly fatal = true;
}

export function isKafkaSecurityError(err: unknown): err is KafkaSecurityError {
  return err instanceof KafkaSecurityError;
}

/** The broker refused the SASL credentials (wrong user name or password, or no such user for the mechanism). */
export class SaslAuthenticationError extends KafkaSecurityError {
  override name = 'SaslAuthenticationError';
  constructor(where: string, user: string, mechanism: string, settings: string, options?: { cause?: unknown }) {
    super(
      `SASL authentication failed for user "${user}" with mechanism ${mechanism} at ${where}: the broker refused the user name or password; fix username and password in sasl.jaas.config (${settings}), or create the user for ${mechanism} on the cluster`,
      options,
    );
  }
}

/** The listener does SASL, but not with the configured mechanism. */
export class SaslMechanismNotEnabledError extends KafkaSecurityError {
  override name = 'SaslMechanismNotEnabledError';
  constructor(where: string, mechanism: string, enabled: readonly string[], settings: string, options?: { cause?: unknown }) {
    super(
      `the broker at ${where} does not enable SASL mechanism ${mechanism} (it offers ${enabled.join(', ') || 'none'}): set sasl.mechanism and the matching sasl.jaas.config login module (${settings})`,
      options,
    );
  }
}

/** The listener expects SASL, the client does not authenticate. */
export class SaslRequiredError extends KafkaSecurityError {
  override name = 'SaslRequiredError';
  constructor(where: string, protocol: string, enabled: readonly string[], settings: string, options?: { cause?: unknown }) {
    const tls = protocol === 'SSL' ? 'SASL_SSL' : 'SASL_PLAINTEXT';
    super(
      `the broker at ${where} expects SASL authentication (mechanisms ${enabled.join(', ') || 'unknown'}) but security.protocol is ${protocol}: set security.protocol=${tls}, sasl.mechanism and sasl.jaas.config (${settings})`,
      options,
    );
  }
}

/** The client authenticates with SASL, the listener does not do SASL. */
export class SaslNotEnabledError extends KafkaSecurityError {
  override name = 'SaslNotEnabledError';
  constructor(where: string, protocol: string, settings: string, options?: { cause?: unknown }) {
    const without = protocol === 'SASL_SSL' ? 'SSL' : 'PLAINTEXT';
    super(
      `the broker at ${where} does not use SASL on this listener but security.protocol is ${protocol}: set security.protocol=${without} (${settings}), or connect to the broker's SASL listener`,
      options,
    );
  }
}

/** The broker's certificate is not signed by a CA the client trusts (or is expired, revoked, ...). */
export class UntrustedCertificateError extends KafkaSecurityError {
  override name = 'UntrustedCertificateError';
  constructor(where: string, reason: string, issuer: string | undefined, trust: string, settings: string, options?: { cause?: unknown }) {
    super(
      `the TLS certificate of the broker at ${where} is not trusted (${reason}${issuer ? `; issued by ${issuer}` : ''}): put the CA that signed it in ssl.truststore.location (${settings}; now ${trust})`,
      options,
    );
  }
}

/** The broker's certificate does not name the host the client connected to. */
export class HostnameMismatchError extends KafkaSecurityError {
  override name = 'HostnameMismatchError';
  constructor(where: string, host: string, names: string, settings: string, options?: { cause?: unknown }) {
    super(
      `the TLS certificate of the broker at ${where} does not name the host "${host}" (it names ${names || 'no host'}): connect by a name the certificate holds, have the broker's certificate name "${host}", or set ssl.endpoint.identification.algorithm= (empty) to skip the host-name check (${settings})`,
      options,
    );
  }
}

/** The broker wants a client certificate (mutual TLS) and got none, or refused the one it got. */
export class ClientCertificateError extends KafkaSecurityError {
  override name = 'ClientCertificateError';
  constructor(where: string, hadCertificate: boolean, alert: string, settings: string, options?: { cause?: unknown }) {
    super(
      hadCertificate
        ? `the broker at ${where} refused the client certificate (TLS alert: ${alert}): use a certificate signed by a CA the broker's listener trusts in ssl.keystore.location (${settings})`
        : `the broker at ${where} requires a client certificate (mutual TLS; TLS alert: ${alert}): set ssl.keystore.location (and ssl.keystore.type, ssl.keystore.password or ssl.key.password) (${settings})`,
      options,
    );
  }
}

/** A plaintext client (PLAINTEXT, SASL_PLAINTEXT) connected to a TLS listener. */
export class PlaintextClientOnTlsListenerError extends KafkaSecurityError {
  override name = 'PlaintextClientOnTlsListenerError';
  constructor(where: string, protocol: string, settings: string, options?: { cause?: unknown }) {
    const tls = protocol === 'SASL_PLAINTEXT' ? 'SASL_SSL' : 'SSL (or SASL_SSL)';
    super(
      `the broker at ${where} speaks TLS but security.protocol is ${protocol}: set security.protocol=${tls} and ssl.truststore.location in a client properties file given with --kafka-config (${settings})`,
      options,
    );
  }
}

/** A TLS client (SSL, SASL_SSL) connected to a plaintext listener. */
export class TlsClientOnPlaintextListenerError extends KafkaSecurityError {
  override name = 'TlsClientOnPlaintextListenerError';
  constructor(where: string, protocol: string, settings: string, options?: { cause?: unknown }) {
    const plain = protocol === 'SASL_SSL' ? 'SASL_PLAINTEXT' : 'PLAINTEXT';
    super(
      `the broker at ${where} does not speak TLS on this port but security.protocol is ${protocol}: connect to the broker's TLS listener, or set security.protocol=${plain} (${settings})`,
      options,
    );
  }
}
