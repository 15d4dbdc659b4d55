// Types of scripts/s3server.mjs (plain ESM so that it runs before any TypeScript tooling).
import type { ChildProcess } from 'node:child_process';

export declare const VERSITYGW_MODULE: string;
export declare const DEFAULT_VERSITYGW_VERSION: string;
export declare const S3_ACCESS_KEY: string;
export declare const S3_SECRET_KEY: string;

export declare class S3ServerError extends Error {
  details?: string;
}

export interface S3ServerOptions {
  env?: NodeJS.ProcessEnv;
  version?: string;
  cache?: string;
  quiet?: boolean;
}

export interface S3ServerStartOptions extends S3ServerOptions {
  port: number;
  /** Folder of this server: objects under data/<bucket>/<key>, its log and pid. */
  dir: string;
  buckets?: string[];
  accessKey?: string;
  secretKey?: string;
  detached?: boolean;
}

export interface S3Server {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region: string;
  /** Objects are plain files at <dataDir>/<bucket>/<key>. */
  dataDir: string;
  pid: number | undefined;
  process: ChildProcess;
  stop(): Promise<void>;
}

export declare function ensureS3Server(opts?: S3ServerOptions): Promise<{ bin: string; built: boolean; ms: number }>;
export declare function startS3Server(opts: S3ServerStartOptions): Promise<S3Server>;
export declare function s3Env(server: S3Server): Record<string, string>;
