/**
 * Trust stores and key stores of a Java client properties file, turned into what Node's TLS
 * takes: PEM certificates for `ca`, a PEM chain and a private key for `cert` and `key`.
 *
 * Formats: PEM (Kafka's `ssl.*.type=PEM`) and PKCS12. PKCS12 is read with node-forge, not with
 * Node's `pfx` option: a trust store holds certificates and no private key, and Node's PKCS12
 * loader (OpenSSL's PKCS12_parse behind `tls.createSecureContext({ pfx })`) refuses such a file
 * ("Unable to load private key from PFX data"); `pfx` also treats a store's extra certificates
 * as the client's chain, not as trusted CAs, and OpenSSL 3 without its legacy provider cannot
 * open stores made by older keytool and openssl defaults (RC2, 3DES), which forge reads. Every
 * certificate and key forge returns is handed on as DER to Node's own parsers (X509Certificate,
 * createPrivateKey), so that any key type works (forge itself reads RSA keys only).
 * JKS and JCEKS stores are refused with the keytool command that converts them to PKCS12.
 *
 * Errors are ConfigErrors that name the property and the file, never a password.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Forge from 'node-forge';
import { Secret } from '../../config/secret.ts';
import { ConfigError, errorMessage } from '../../errors.ts';

export const STORE_TYPES = ['PEM', 'PKCS12'] as const;
export type StoreType = (typeof STORE_TYPES)[number];

/** What the bytes of a store file are, from their first bytes. */
type Sniffed = StoreType | 'JKS' | 'JCEKS' | 'unknown';

export interface TrustedCertificates {
  type: StoreType;
  /** PEM certificates, for Node's `ca`. */
  pem: string[];
  /** Their subjects, for messages ("trusting CN=corp-ca"). */
  subjects: string[];
}

export interface ClientIdentity {
  type: StoreType;
  /** The client certificate first, then the rest of its chain (PEM). */
  certChain: string;
  /** The private key, unencrypted PEM: handed to Node's TLS only. */
  key: Secret;
  subject: string;
}

/** Names a property in messages: `ssl.truststore.location (client.properties:4)`. */
export interface PropertyRef {
  key: string;
  where: string;
}

const ref = (r: PropertyRef): string => `${r.where}: ${r.key}`;

function sniff(bytes: Buffer): Sniffed {
  if (bytes.length >= 4 && bytes.readUInt32BE(0) === 0xfeedfeed) return 'JKS';
  if (bytes.length >= 4 && bytes.readUInt32BE(0) === 0xcececece) return 'JCEKS';
  if (
    bytes
      .subarray(0, 64 * 1024)
      .toString('latin1')
      .includes('-----BEGIN ')
  )
    return 'PEM';
  if (bytes[0] === 0x30) return 'PKCS12'; // a DER SEQUENCE
  return 'unknown';
}

/**
 * The store's format: the declared `ssl.*.type` checked against the bytes. Without a declared
 * type the bytes decide; `JKS` (Kafka's default type) holding PKCS12 bytes is read as PKCS12, as
 * Java does (keystore.type.compat).
 */
function resolveType(bytes: Buffer, declared: string | undefined, typeKey: string, location: PropertyRef, path: string): StoreType {
  const found = sniff(bytes);
  if (found === 'JKS' || found === 'JCEKS') {
    throw new ConfigError(
      `${ref(location)}: ${path} is a ${found} store, which lk cannot read: convert it with \`keytool -importkeystore -srckeystore ${path} -destkeystore ${path}.p12 -deststoretype PKCS12\` and set ${typeKey}=PKCS12`,
    );
  }
  const want = declared?.toUpperCase();
  if (want !== undefined && want !== 'JKS' && !(STORE_TYPES as readonly string[]).includes(want)) {
    throw new ConfigError(`${location.where}: ${typeKey}: ${declared} is not supported: use PEM or PKCS12`);
  }
  if (found === 'unknown') throw new ConfigError(`${ref(location)}: ${path} is neither PEM text nor a PKCS12 store`);
  if (want === 'PEM' && found !== 'PEM') {
    throw new ConfigError(`${ref(location)}: ${typeKey} is PEM but ${path} is not PEM text (it looks like PKCS12): set ${typeKey}=PKCS12`);
  }
  if ((want === 'PKCS12' || want === 'JKS') && found !== 'PKCS12') {
    throw new ConfigError(`${ref(location)}: ${typeKey} is ${want} but ${path} holds PEM text: set ${typeKey}=PEM`);
  }
  return found;
}

/** PEM blocks of one kind ("CERTIFICATE", "PRIVATE KEY", ...) in `text`. */
function pemBlocks(text: string, label: RegExp): string[] {
  const out: string[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) if (label.test(m[1]!)) out.push(m[0]);
  return out;
}

function certificatesFromPem(text: string, what: string): X509Certificate[] {
  return pemBlocks(text, /^(X509 |TRUSTED )?CERTIFICATE$/).map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new ConfigError(`${what}: certificate ${i + 1} cannot be read (${errorMessage(err)})`);
    }
  });
}

// node-forge is loaded only for PKCS12 stores: most runs never need it, and it is large.
let forgeModule: typeof Forge | undefined;
const forge = (): typeof Forge => (forgeModule ??= createRequire(import.meta.url)('node-forge') as typeof Forge);

/** Opens a PKCS12 store; a wrong or missing password is a ConfigError naming `passwordKey`. */
function openPkcs12(bytes: Buffer, passwords: (Secret | undefined)[], what: string, passwordKey: string): Forge.pkcs12.Pkcs12Pfx {
  const f = forge();
  let asn1: Forge.asn1.Asn1;
  try {
    asn1 = f.asn1.fromDer(f.util.createBuffer(bytes.toString('binary')));
  } catch (err) {
    throw new ConfigError(`${what}: not a readable PKCS12 store (${errorMessage(err)})`);
  }
  let last: unknown;
  for (const password of passwords.length > 0 ? passwords : [undefined]) {
    try {
      return f.pkcs12.pkcs12FromAsn1(asn1, password?.reveal() ?? '');
    } catch (err) {
      last = err;
    }
  }
  const detail = errorMessage(last);
  if (/password|MAC could not be verified|decrypt/i.test(detail)) {
    throw new ConfigError(`${what}: the store does not open with ${passwordKey} (wrong or missing password)`);
  }
  throw new ConfigError(`${what}: not a readable PKCS12 store (${detail})`);
}

function der(f: typeof Forge, node: Forge.asn1.Asn1): Buffer {
  return Buffer.from(f.asn1.toDer(node).getBytes(), 'binary');
}

function pkcs12Certificates(p12: Forge.pkcs12.Pkcs12Pfx): X509Certificate[] {
  const f = forge();
  const bags = p12.getBags({ bagType: f.pki.oids.certBag! })[f.pki.oids.certBag!] ?? [];
  return bags.map((bag) => {
    const node = bag.cert ? f.pki.certificateToAsn1(bag.cert) : (bag as { asn1?: Forge.asn1.Asn1 }).asn1;
    return new X509Certificate(der(f, node!));
  });
}

function pkcs12Keys(p12: Forge.pkcs12.Pkcs12Pfx): KeyObject[] {
  const f = forge();
  const keys: KeyObject[] = [];
  for (const type of [f.pki.oids.pkcs8ShroudedKeyBag!, f.pki.oids.keyBag!]) {
    for (const bag of p12.getBags({ bagType: type })[type] ?? []) {
      if (bag.key) keys.push(createPrivateKey(f.pki.privateKeyToPem(bag.key)));
      else {
        const node = (bag as { asn1?: Forge.asn1.Asn1 }).asn1;
        if (node) keys.push(createPrivateKey({ key: der(f, node), format: 'der', type: 'pkcs8' }));
      }
    }
  }
  return keys;
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.split('\n').join(', ');
}

/** The trusted certificates of `ssl.truststore.location` (PEM or PKCS12). */
export function readTrustStore(options: {
  bytes: Buffer;
  path: string;
  declaredType: string | undefined;
  password: Secret | undefined;
  location: PropertyRef;
}): TrustedCertificates {
  const { bytes, path, location } = options;
  const what = `${ref(location)} (${path})`;
  const type = resolveType(bytes, options.declaredType, 'ssl.truststore.type', location, path);
  const certs =
    type === 'PEM'
      ? certificatesFromPem(bytes.toString('latin1'), what)
      : pkcs12Certificates(openPkcs12(bytes, [options.password], what, 'ssl.truststore.password'));
  if (certs.length === 0) throw new ConfigError(`${what}: the trust store holds no certificate`);
  return { type, pem: certs.map((c) => c.toString()), subjects: certs.map(subjectOf) };
}

/** Trusted certificates given inline (`ssl.truststore.certificates`, PEM). */
export function trustFromPemText(text: string, location: PropertyRef): TrustedCertificates {
  const certs = certificatesFromPem(text, ref(location));
  if (certs.length === 0) throw new ConfigError(`${ref(location)}: holds no PEM certificate`);
  return { type: 'PEM', pem: certs.map((c) => c.toString()), subjects: certs.map(subjectOf) };
}

/**
 * The client certificate and key (mutual TLS): the certificate is the one whose public key
 * matches the store's private key, followed by the store's other certificates (its chain).
 */
function identity(type: StoreType, certs: X509Certificate[], keys: KeyObject[], what: string): ClientIdentity {
  if (keys.length === 0) throw new ConfigError(`${what}: the key store holds no private key`);
  if (keys.length > 1) throw new ConfigError(`${what}: the key store holds ${keys.length} private keys; keep one (the client's)`);
  const key = keys[0]!;
  const leaf = certs.find((c) => c.checkPrivateKey(key));
  if (!leaf) throw new ConfigError(`${what}: no certificate in the key store matches its private key`);
  const chain = [leaf, ...certs.filter((c) => c !== leaf)];
  return {
    type,
    certChain: chain.map((c) => c.toString()).join(''),
    key: new Secret(key.export({ type: 'pkcs8', format: 'pem' }).toString()),
    subject: subjectOf(leaf),
  };
}

/** A PEM private key, decrypted with `keyPassword` when it is encrypted. */
function keyFromPem(text: string, keyPassword: Secret | undefined, what: string): KeyObject[] {
  return pemBlocks(text, /PRIVATE KEY$/).map((block) => {
    const encrypted = /ENCRYPTED PRIVATE KEY|Proc-Type: 4,ENCRYPTED/.test(block);
    if (encrypted && keyPassword === undefined) throw new ConfigError(`${what}: the private key is encrypted: set ssl.key.password`);
    try {
      return createPrivateKey(encrypted ? { key: block, passphrase: keyPassword!.reveal() } : block);
    } catch (err) {
      if (encrypted) throw new ConfigError(`${what}: ssl.key.password does not decrypt the private key`);
      throw new ConfigError(`${what}: the private key cannot be read (${errorMessage(err)})`);
    }
  });
}

/** The client identity of `ssl.keystore.location` (PEM: key and certificate chain in one file; or PKCS12). */
export function readKeyStore(options: {
  bytes: Buffer;
  path: string;
  declaredType: string | undefined;
  storePassword: Secret | undefined;
  keyPassword: Secret | undefined;
  location: PropertyRef;
}): ClientIdentity {
  const { bytes, path, location } = options;
  const what = `${ref(location)} (${path})`;
  const type = resolveType(bytes, options.declaredType, 'ssl.keystore.type', location, path);
  if (type === 'PEM') {
    const text = bytes.toString('latin1');
    return identity('PEM', certificatesFromPem(text, what), keyFromPem(text, options.keyPassword, what), what);
  }
  // Java opens the store with ssl.keystore.password and its key with ssl.key.password (often the same).
  const p12 = openPkcs12(bytes, [options.storePassword, options.keyPassword].filter(Boolean), what, 'ssl.keystore.password');
  return identity('PKCS12', pkcs12Certificates(p12), pkcs12Keys(p12), what);
}

/** The client identity given inline: `ssl.keystore.certificate.chain` and `ssl.keystore.key` (PEM). */
export function identityFromPemText(chain: string, key: string, keyPassword: Secret | undefined, location: PropertyRef): ClientIdentity {
  const what = ref(location);
  return identity('PEM', certificatesFromPem(chain, what), keyFromPem(key, keyPassword, what), what);
}
