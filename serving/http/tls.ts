/**
 * HTTP or HTTPS: with `--tls-cert` and `--tls-key` (PEM files), serving answers only HTTPS on its
 * port, and so GraphQL, the dashboard and WebSocket subscriptions (wss://) are all encrypted.
 * A renewed certificate (cert-manager, certbot) is picked up without a restart: both files are
 * followed (serving/watchedFile.ts) and the server's secure context is replaced when the pair
 * read together is valid; new connections get the new certificate.
 *
 * The other way is a reverse proxy that terminates TLS (docs/serving-layer.md, HTTPS).
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import { ConfigError, errorMessage } from '../../services/errors.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ServeConfig } from '../config.ts';
import { WatchedFile } from '../watchedFile.ts';

interface KeyPair {
  cert: Buffer;
  key: Buffer;
}

/** Reads and checks the pair (a certificate that does not match its key is refused here, not at the first handshake). */
function readPair(certPath: string, keyPath: string): KeyPair {
  let pair: KeyPair;
  try {
    pair = { cert: readFileSync(certPath), key: readFileSync(keyPath) };
  } catch (err) {
    throw new ConfigError(`cannot read the TLS certificate or key: ${errorMessage(err)}`);
  }
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new ConfigError(`the TLS certificate ${certPath} and key ${keyPath} cannot be used together: ${errorMessage(err)}`);
  }
  return pair;
}

export interface ServeHttpServer {
  server: Server;
  protocol: 'http' | 'https';
  close(): void;
}

export function createServeServer(
  config: Pick<ServeConfig, 'tlsCert' | 'tlsKey' | 'reloadPollMs'>,
  listener: RequestListener,
  logger: Logger,
): ServeHttpServer {
  if (config.tlsCert === null || config.tlsKey === null) return { server: createHttpServer(listener), protocol: 'http', close() {} };
  const certPath = config.tlsCert;
  const keyPath = config.tlsKey;
  const server = createHttpsServer(readPair(certPath, keyPath), listener);
  // Either file changing reloads the pair; the pair must be valid together (a half-written renewal keeps the old one).
  const reload = () => {
    try {
      server.setSecureContext(readPair(certPath, keyPath));
      logger.info({ cert: certPath }, 'TLS certificate reloaded');
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'TLS certificate or key changed but cannot be used; keeping the previous pair');
    }
  };
  const watched = [certPath, keyPath].map(
    (path) =>
      new WatchedFile<true>({
        path,
        what: path === certPath ? 'TLS certificate' : 'TLS key',
        parse: () => true,
        onChange: reload,
        pollMs: config.reloadPollMs,
        logger,
      }),
  );
  return {
    server,
    protocol: 'https',
    close: () => watched.forEach((w) => w.close()),
  };
}
