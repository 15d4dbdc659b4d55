/**
 * A real S3-compatible server for a test file (versitygw, scripts/s3server.mjs), on a free port of
 * 127.0.0.1 with a folder of its own, started the way the tests start Kafka brokers of their own.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startS3Server, s3Env, type S3Server } from '../scripts/s3server.mjs';
import { freePort, tempDir } from './helpers.ts';

export interface TestS3 {
  server: S3Server;
  /** The standard AWS settings for clients of this server (give them to child processes). */
  env: Record<string, string>;
  /** Creates a bucket (a folder of the server's). */
  bucket(name: string): string;
  stop(): Promise<void>;
}

export async function startTestS3(buckets: string[] = ['lk-test']): Promise<TestS3> {
  const dir = tempDir('lk-s3-');
  const server = await startS3Server({ port: await freePort(), dir: dir.path, buckets, quiet: true });
  return {
    server,
    env: s3Env(server),
    bucket(name) {
      mkdirSync(join(server.dataDir, name), { recursive: true });
      return name;
    },
    async stop() {
      await server.stop();
      rmSync(dir.path, { recursive: true, force: true });
    },
  };
}
