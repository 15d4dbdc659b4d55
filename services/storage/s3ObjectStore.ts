/**
 * The object store on S3 or an S3-compatible server (versitygw, MinIO, Ceph, R2...), through the
 * AWS SDK. Object `a/b` of a store at `s3://bucket/prefix` is the S3 object `prefix/a/b`.
 *
 * - Create-only is `PutObject` with `If-None-Match: *`, compare-and-swap `PutObject` with
 *   `If-Match: <etag>`: the server decides, so that two hosts racing for one key cannot both
 *   win (AWS S3 since 2024; the contract test proves it of the server the tests use). A 412
 *   answer is the ordinary "someone else won" result, not an error. AWS may also answer 409
 *   (ConditionalRequestConflict) while another conditional write of the key is in flight: the
 *   write is tried again, then the 412 or success decides.
 * - A single PutObject writes the object whole or not at all; S3 allows up to 5 GiB in one
 *   request, far above any file the platform writes (part files and snapshots are rolled by size).
 * - Checksums are computed only where S3 requires them: several S3-compatible servers refuse the
 *   SDK's newer default trailing checksums.
 * Credentials never appear in a message: errors name the endpoint, the bucket and the key.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { InfrastructureError, errorMessage } from '../errors.ts';
import { logger } from '../observability/logger.ts';
import {
  checkKey,
  checkPrefix,
  joinKey,
  type ObjectBody,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type PutResult,
  type StoredObject,
} from './objectStore.ts';
import type { S3Settings } from './storageLocation.ts';

// The SDK warns on Node 20 that its releases after January 2027 need Node 22. The project pins a
// release that supports Node 20 (package.json) for as long as it supports Node 20, so the warning
// says nothing a user can act on; it would only clutter every command's stderr.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/**
 * The SDK's own messages go to the platform's log at debug level: without a logger it writes
 * to the console, for example when a streamed upload meets an expected 412.
 */
const sdkLog = logger.child({ component: 'aws-sdk' });
const sdkLogger = {
  trace: () => undefined,
  debug: (...args: unknown[]) => sdkLog.debug({ args }, 'aws-sdk'),
  info: (...args: unknown[]) => sdkLog.debug({ args }, 'aws-sdk'),
  warn: (...args: unknown[]) => sdkLog.debug({ args }, 'aws-sdk warning'),
  error: (...args: unknown[]) => sdkLog.debug({ args }, 'aws-sdk error'),
};

/** How many times a conditional write that met a concurrent one (409) is tried again. */
const CONFLICT_RETRIES = 8;

interface S3Error {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(err: unknown): number | undefined {
  return (err as S3Error).$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  const e = err as S3Error;
  return statusOf(err) === 404 || e.name === 'NoSuchKey' || e.name === 'NotFound';
}

/** One S3 client per endpoint and credentials: it keeps its HTTP connections alive. */
const clients = new Map<string, S3Client>();

function clientFor(settings: S3Settings): S3Client {
  const id = JSON.stringify([settings.endpoint, settings.region, settings.accessKeyId, settings.secretAccessKey, settings.pathStyle]);
  let client = clients.get(id);
  if (!client) {
    client = new S3Client({
      region: settings.region,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      forcePathStyle: settings.pathStyle,
      ...(settings.accessKeyId && settings.secretAccessKey
        ? {
            credentials: {
              accessKeyId: settings.accessKeyId,
              secretAccessKey: settings.secretAccessKey,
              ...(settings.sessionToken ? { sessionToken: settings.sessionToken } : {}),
            },
          }
        : {}),
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: settings.maxAttempts,
      logger: sdkLogger,
    });
    clients.set(id, client);
  }
  return client;
}

export class S3ObjectStore implements ObjectStore {
  readonly kind = 's3' as const;
  readonly location: string;
  private readonly client: S3Client;

  constructor(
    private readonly settings: S3Settings,
    private readonly bucket: string,
    /** Key prefix inside the bucket, without leading or trailing `/` ('' for the whole bucket). */
    private readonly prefix: string,
  ) {
    this.location = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
    this.client = clientFor(settings);
  }

  private objectKey(key: string): string {
    return joinKey(this.prefix, checkKey(key));
  }

  private fail(action: string, key: string, err: unknown): InfrastructureError {
    const where = `${this.location}/${key}`;
    const status = statusOf(err);
    const e = err as S3Error;
    const code = e.name ?? e.Code;
    const endpoint = this.settings.endpoint ?? `AWS S3 (${this.settings.region})`;
    if (code === 'NoSuchBucket') {
      return new InfrastructureError(`bucket "${this.bucket}" does not exist at ${endpoint}: create it first (cannot ${action} ${where})`, {
        cause: err,
      });
    }
    if (status === 403 || code === 'AccessDenied' || code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch') {
      return new InfrastructureError(
        `object storage at ${endpoint} refused the credentials (${code ?? status}) for ${action} ${where}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
        { cause: err },
      );
    }
    if (status === undefined) {
      return new InfrastructureError(`cannot reach object storage at ${endpoint} (${action} ${where}): ${errorMessage(err)}`, {
        cause: err,
      });
    }
    return new InfrastructureError(`object storage ${action} ${where} failed: ${code ?? 'HTTP ' + status}: ${errorMessage(err)}`, {
      cause: err,
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return { key, size: res.ContentLength ?? 0, etag: res.ETag ?? '', lastModified: res.LastModified?.getTime() ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.fail('head', key, err);
    }
  }

  async get(key: string): Promise<StoredObject | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      const bytes = Buffer.from(await res.Body!.transformToByteArray());
      return { key, size: bytes.length, etag: res.ETag ?? '', lastModified: res.LastModified?.getTime() ?? 0, bytes };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.fail('get', key, err);
    }
  }

  async put(key: string, body: ObjectBody, options: PutOptions = {}): Promise<PutResult> {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    return this.conditionalPut(
      key,
      options,
      () => ({ Body: bytes, ContentLength: bytes.length }),
      async () => createHash('md5').update(bytes).digest('hex'),
    );
  }

  async putFile(key: string, path: string, options: PutOptions = {}): Promise<PutResult> {
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      throw new InfrastructureError(`cannot upload ${path} to ${this.location}/${key}: ${errorMessage(err)}`, { cause: err });
    }
    // A create-only upload of a large file first asks whether the key exists: a server that
    // refuses the write answers 412 before reading the body and closes the connection, which
    // the client sees as a reset in the middle of its upload.
    if (options.ifAbsent && (await this.head(key)) !== undefined) return { ok: false, reason: 'exists' };
    // A new stream per attempt: a body stream can be read only once.
    return this.conditionalPut(
      key,
      options,
      () => ({ Body: createReadStream(path), ContentLength: size }),
      async () => {
        const hash = createHash('md5');
        await pipeline(createReadStream(path), hash);
        return hash.digest('hex');
      },
    );
  }

  /**
   * A conditional PutObject. Its answer can be ambiguous: the connection dropped (a server that
   * refuses early resets an upload in flight; a write can also land and its answer be lost), or
   * the SDK retried after such a drop and the retry met our own first write (412). Then the
   * object is read back: if it is ours (its ETag is our content's MD5, as S3 computes it for a
   * single PutObject) the write succeeded; if it is another, the condition failed; if the
   * condition still holds, the write is tried again.
   */
  private async conditionalPut(
    key: string,
    options: PutOptions,
    body: () => Pick<PutObjectCommandInput, 'Body' | 'ContentLength'>,
    contentMd5: () => Promise<string>,
  ): Promise<PutResult> {
    const conditional = options.ifAbsent === true || options.ifMatch !== undefined;
    const input: PutObjectCommandInput = {
      Bucket: this.bucket,
      Key: this.objectKey(key),
      ...(options.ifAbsent ? { IfNoneMatch: '*' } : {}),
      ...(options.ifMatch !== undefined ? { IfMatch: options.ifMatch } : {}),
    };
    const refused: PutResult = { ok: false, reason: options.ifAbsent ? 'exists' : 'changed' };
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.client.send(new PutObjectCommand({ ...input, ...body() }));
        return { ok: true, etag: res.ETag ?? (await this.head(key))?.etag ?? '' };
      } catch (err) {
        const status = statusOf(err);
        const retried = ((err as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1) > 1;
        const dropped = status === undefined && conditional;
        if ((status === 412 && retried) || dropped) {
          const current = await this.head(key);
          if (current !== undefined && current.etag.replace(/"/g, '') === (await contentMd5())) return { ok: true, etag: current.etag };
          const stillHolds = options.ifAbsent ? current === undefined : current?.etag === options.ifMatch;
          if (!stillHolds) return refused;
          if (attempt < CONFLICT_RETRIES) continue;
        }
        if (status === 412) return refused;
        // If-Match on a key that is gone: AWS answers 404, which means the same as a stale tag.
        if (options.ifMatch !== undefined && isNotFound(err)) return refused;
        if (status === 409 && conditional && attempt < CONFLICT_RETRIES) {
          await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
          continue;
        }
        throw this.fail('put', key, err);
      }
    }
  }

  async download(key: string, to: string): Promise<boolean> {
    mkdirSync(dirname(to), { recursive: true });
    const tmp = `${to}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      await pipeline(res.Body as Readable, createWriteStream(tmp));
      await rename(tmp, to);
      return true;
    } catch (err) {
      await rm(tmp, { force: true });
      if (isNotFound(err)) return false;
      throw this.fail('download', key, err);
    }
  }

  async *list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    const base = this.prefix ? `${this.prefix}/` : '';
    let token: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: base + prefix,
            ...(token ? { ContinuationToken: token } : {}),
            ...(!token && options.startAfter !== undefined ? { StartAfter: base + options.startAfter } : {}),
          }),
        );
      } catch (err) {
        throw this.fail('list', prefix, err);
      }
      for (const o of res.Contents ?? []) {
        if (!o.Key) continue;
        yield { key: o.Key.slice(base.length), size: o.Size ?? 0, etag: o.ETag ?? '', lastModified: o.LastModified?.getTime() ?? 0 };
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw this.fail('delete', key, err);
    }
  }

  localPath(): undefined {
    return undefined;
  }

  child(prefix: string): ObjectStore {
    return new S3ObjectStore(this.settings, this.bucket, joinKey(this.prefix, checkKey(prefix.replace(/\/$/, ''))));
  }
}
