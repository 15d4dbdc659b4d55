/**
 * Certificates for tests of secured clusters, made here with openssl and keytool (nothing is
 * checked in): a CA, broker certificates signed by it (one that names 127.0.0.1 and localhost,
 * one that names another host only), client certificates for mutual TLS, a second CA that signed
 * nothing the broker uses, and the same material as PEM files, Kafka PEM key stores (key and
 * chain in one file), PKCS12 stores made by openssl and a PKCS12 trust store made by Java's
 * keytool, as users have them.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  /** PEM certificate of the CA that signed every certificate below. */
  caPem: string;
  /** PEM certificate of a CA that signed none of them. */
  otherCaPem: string;
  /** Kafka PEM key store of the broker (EC key, PKCS#8, then its certificate and the CA): names IP 127.0.0.1 and localhost. */
  brokerKeystorePem: string;
  /** The same for a broker certificate that names only `wrongHost`. */
  wrongHostKeystorePem: string;
  wrongHost: string;
  /** Client identity for mutual TLS, PEM key store with its key encrypted by `keyPassword`. */
  clientKeystorePem: string;
  /** The same as a PKCS12 store (an RSA key, made by openssl), opened by `storePassword`. */
  clientKeystoreP12: string;
  /** The CA as a PKCS12 trust store made by keytool, opened by `storePassword`. */
  truststoreP12: string;
  /** A client certificate signed by the other CA: a broker that trusts only `caPem` refuses it. */
  strangerKeystorePem: string;
  keyPassword: string;
  storePassword: string;
}

function run(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}: ${r.stderr}`);
}

const openssl = (dir: string, ...args: string[]) => run('openssl', args, dir);

/** A certificate for `name` signed by CA `caName`, with the given subjectAltName. */
function leaf(dir: string, name: string, caName: string, subject: string, san: string | undefined, keyType: 'ec' | 'rsa'): void {
  const keyArgs = keyType === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  openssl(dir, 'req', ...keyArgs, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
  writeFileSync(
    join(dir, `${name}.ext`),
    `${san ? `subjectAltName=${san}\n` : ''}extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`,
  );
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${caName}.pem`,
    '-CAkey',
    `${caName}.key`,
    '-set_serial',
    String(Math.floor(Math.random() * 2 ** 31)),
    '-days',
    '3',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.crt`,
  );
}

export function makeTestPki(dir: string): TestPki {
  const keyPassword = 'key-pass-4711';
  const storePassword = 'store-pass-4711';
  for (const name of ['ca', 'other-ca']) {
    openssl(
      dir,
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '3',
      '-subj',
      `/CN=lk-test-${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    );
  }
  const wrongHost = 'broker.elsewhere.invalid';
  leaf(dir, 'broker', 'ca', '/CN=lk-test-broker', 'IP:127.0.0.1,DNS:localhost', 'ec');
  leaf(dir, 'wronghost', 'ca', `/CN=${wrongHost}`, `DNS:${wrongHost}`, 'ec');
  leaf(dir, 'client', 'ca', '/CN=lk-test-client', undefined, 'ec');
  leaf(dir, 'client-rsa', 'ca', '/CN=lk-test-client-rsa', undefined, 'rsa');
  leaf(dir, 'stranger', 'other-ca', '/CN=lk-test-stranger', undefined, 'ec');
  const text = (f: string) => readFileSync(join(dir, f), 'utf8');
  const keystore = (name: string, keyFile: string) => {
    const path = join(dir, `${name}.keystore.pem`);
    writeFileSync(path, text(keyFile) + text(`${name}.crt`) + text('ca.pem'));
    return path;
  };
  // The client's PEM key, encrypted (PKCS#8), opened with ssl.key.password. PBE-SHA1-3DES, not
  // openssl's default PBES2/AES: Kafka's PEM key store on Java 17 cannot read PBES2 ("PBES2
  // SecretKeyFactory not available"), and the same file must serve Kafka's own tools.
  openssl(dir, 'pkcs8', '-topk8', '-in', 'client.key', '-out', 'client.enc.key', '-v1', 'PBE-SHA1-3DES', '-passout', `pass:${keyPassword}`);
  openssl(
    dir,
    'pkcs12',
    '-export',
    '-inkey',
    'client-rsa.key',
    '-in',
    'client-rsa.crt',
    '-certfile',
    'ca.pem',
    '-name',
    'lk-client',
    '-out',
    'client.p12',
    '-passout',
    `pass:${storePassword}`,
  );
  run(
    'keytool',
    [
      '-importcert',
      '-noprompt',
      '-alias',
      'lk-ca',
      '-file',
      'ca.pem',
      '-keystore',
      'truststore.p12',
      '-storetype',
      'PKCS12',
      '-storepass',
      storePassword,
    ],
    dir,
  );
  return {
    dir,
    caPem: join(dir, 'ca.pem'),
    otherCaPem: join(dir, 'other-ca.pem'),
    brokerKeystorePem: keystore('broker', 'broker.key'),
    wrongHostKeystorePem: keystore('wronghost', 'wronghost.key'),
    wrongHost,
    clientKeystorePem: keystore('client', 'client.enc.key'),
    clientKeystoreP12: join(dir, 'client.p12'),
    truststoreP12: join(dir, 'truststore.p12'),
    strangerKeystorePem: keystore('stranger', 'stranger.key'),
    keyPassword,
    storePassword,
  };
}
