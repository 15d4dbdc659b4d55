/**
 * Load-time fixes for kafkajs 2.2.4, which has had no release since 2023. Imported before
 * kafkajs itself (see kafkaLog.ts), so kafkajs's own `require` picks up the fixed modules.
 *
 * One guard for every patch, checked before anything is replaced:
 * - the installed kafkajs must be exactly the version these patches were written and tested for
 *   (package.json pins it); another version stops the process with one message;
 * - no kafkajs module may be loaded yet (a module loaded before its patch keeps the original:
 *   half-patched would be worse than unpatched);
 * - each replaced module is installed before anything that requires it is loaded (the order below).
 * Every patch is listed in `KAFKAJS_PATCHES` with kafkajs's original beside the replacement:
 * `__tests__/kafkajsPatches.spec.ts` compares the two byte for byte, and the compatibility probe
 * (scripts/kafkajs-compat-probe.mjs, run by the test suite) exercises the patched client against
 * the real broker.
 *
 * 1. `producer/groupMessagesPerPartition.js` copies the whole per-partition array for every
 *    message (`[...current, message]`): quadratic in the batch size. With 10,000-record batches
 *    over 6 partitions it capped produce at about 40k events/s on 2 cores, CPU-bound in that
 *    function. The replacement is the same grouping, linear. (Measured by `npm run bench:ingest`;
 *    figures in the README.)
 */
import { createRequire, Module } from 'node:module';
import { dirname, sep } from 'node:path';

const require = createRequire(import.meta.url);

/** The kafkajs release these patches replace code of (package.json pins it exactly). */
export const PATCHED_KAFKAJS_VERSION = '2.2.4';

/** One replacement: kafkajs's original and ours, for the equivalence tests. */
export interface KafkajsPatch {
  readonly original: unknown;
  readonly replacement: unknown;
}

/** Every patch by name: modules `kafkajs/src/...` replaced in the require cache, and Encoder methods. */
export const KAFKAJS_PATCHES = new Map<string, KafkajsPatch>();

class KafkajsPatchError extends Error {
  override name = 'KafkajsPatchError';
}

const kafkajsRoot = dirname(require.resolve('kafkajs/package.json')) + sep;
{
  const installed = (require('kafkajs/package.json') as { version: string }).version;
  if (installed !== PATCHED_KAFKAJS_VERSION) {
    throw new KafkajsPatchError(
      `lambda-kappa patches kafkajs ${PATCHED_KAFKAJS_VERSION} at load time (services/log/kafka/kafkajsPatches.ts), but kafkajs ${installed} is installed: run \`npm ci\` (package.json pins ${PATCHED_KAFKAJS_VERSION})`,
    );
  }
  const loaded = Object.keys(require.cache).find((k) => k.startsWith(kafkajsRoot) && !k.endsWith('package.json'));
  if (loaded !== undefined) {
    throw new KafkajsPatchError(
      `kafkajs was loaded before its load-time patches (${loaded.slice(kafkajsRoot.length)}): import services/log/kafka/kafkajsPatches.ts (or kafkaLog.ts) before anything that imports kafkajs`,
    );
  }
}

/**
 * Replaces module `kafkajs/<rel>` in the require cache by `make(original)`: kafkajs's own
 * `require` then gets the replacement. Refuses when the module was already loaded by someone
 * else (whoever loaded it holds the original).
 */
function replaceModule<T>(name: string, rel: string, make: (original: T) => T): T {
  const path = require.resolve(`kafkajs/${rel}`);
  if (require.cache[path]) throw new KafkajsPatchError(`kafkajs patch ${name}: ${rel} was loaded before it could be replaced`);
  const original = require(path) as T;
  const replacement = make(original);
  const patched = new Module(path);
  patched.filename = path;
  patched.loaded = true;
  patched.exports = replacement;
  require.cache[path] = patched;
  KAFKAJS_PATCHES.set(name, { original, replacement });
  return replacement;
}

type Partitioner = (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;

function groupMessagesPerPartition({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: Partitioner;
}): Record<number, unknown[]> {
  if (partitionMetadata.length === 0) return {};
  const result: Record<number, unknown[]> = {};
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (result[partition] ??= []).push(message);
  }
  return result;
}

replaceModule('groupMessagesPerPartition', 'src/producer/groupMessagesPerPartition.js', () => groupMessagesPerPartition);

/*
 * 2. Record encoding, the rest of produce's CPU (a CPU profile of `lk produce`: about a third
 *    of it, plus the garbage it makes). kafkajs's Encoder writes every varint through a fresh
 *    array and a fresh Buffer (`writeUVarInt`), every varlong through Long objects
 *    (`writeVarLong`), allocates a zero-filled 512-byte buffer for every record, and computes
 *    CRC-32C a byte at a time. The replacements below write the same bytes, directly:
 *    - Encoder.prototype.writeUVarInt / writeVarLong (for numbers within 2^52; anything else
 *      takes the original);
 *    - the Record v0 encoder, into one buffer of the record's exact size;
 *    - CRC-32C, slice-by-8.
 *    `__tests__/kafkajsPatches.spec.ts` compares every one with kafkajs's own implementation on
 *    random inputs, byte for byte.
 */

interface KafkajsEncoder {
  buf: Buffer;
  offset: number;
  ensureAvailable(length: number): void;
  writeVarInt(value: number): KafkajsEncoder;
  writeVarLong(value: unknown): KafkajsEncoder;
  writeInt8(value: number): KafkajsEncoder;
  writeVarIntBytes(value: unknown): KafkajsEncoder;
  writeVarIntArray(values: unknown[]): KafkajsEncoder;
}
interface KafkajsEncoderClass {
  new (initialSize?: number): KafkajsEncoder;
  prototype: KafkajsEncoder & { writeUVarInt(value: number): KafkajsEncoder };
  sizeOfVarInt(value: number): number;
  sizeOfVarLong(value: unknown): number;
}

const Encoder = require('kafkajs/src/protocol/encoder.js') as KafkajsEncoderClass;
type RecordArgs = { offsetDelta?: number; timestampDelta?: unknown; key: unknown; value: unknown; headers?: Record<string, unknown> };
type RecordEncoder = (args: RecordArgs) => KafkajsEncoder;

const originalWriteUVarInt = Encoder.prototype.writeUVarInt;
const originalWriteVarLong = Encoder.prototype.writeVarLong;

Encoder.prototype.writeUVarInt = function writeUVarInt(this: KafkajsEncoder, value: number): KafkajsEncoder {
  this.ensureAvailable(5);
  const buf = this.buf;
  let at = this.offset;
  // As the original: 7 bits at a time while anything above the low 7 bits is set (as int32).
  while ((value & 0xffffff80) !== 0) {
    buf[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[at++] = value & 0x7f;
  this.offset = at;
  return this;
};

const MAX_EXACT = 2 ** 52;
Encoder.prototype.writeVarLong = function writeVarLong(this: KafkajsEncoder, value: unknown): KafkajsEncoder {
  if (typeof value !== 'number' || !Number.isInteger(value) || value >= MAX_EXACT || value <= -MAX_EXACT)
    return originalWriteVarLong.call(this, value) as KafkajsEncoder;
  // ZigZag: 2v for v >= 0, -2v - 1 for v < 0 (exact in doubles below 2^53).
  let zz = value >= 0 ? value * 2 : -value * 2 - 1;
  this.ensureAvailable(10);
  const buf = this.buf;
  let at = this.offset;
  while (zz >= 128) {
    buf[at++] = (zz % 128) | 0x80;
    zz = Math.floor(zz / 128);
  }
  buf[at++] = zz;
  this.offset = at;
  return this;
};

KAFKAJS_PATCHES.set('writeUVarInt', { original: originalWriteUVarInt, replacement: Encoder.prototype.writeUVarInt });
KAFKAJS_PATCHES.set('writeVarLong', { original: originalWriteVarLong, replacement: Encoder.prototype.writeVarLong });

/** An Encoder over a buffer of exactly `size` bytes (no zero-filled 512-byte allocation). */
function exactEncoder(size: number): KafkajsEncoder {
  const e = Object.create(Encoder.prototype) as KafkajsEncoder;
  e.buf = Buffer.allocUnsafe(size);
  e.offset = 0;
  return e;
}

function byteLengthOf(value: unknown): number {
  return value == null ? -1 : Buffer.byteLength(value as string | Buffer);
}

/**
 * Bytes of a record's body without headers (what its length varint counts): attributes,
 * timestamp delta, offset delta, key and value (length -1 for null), and an empty header array.
 */
function recordBodySize(timestampDelta: number, offsetDelta: number, keyLength: number, valueLength: number): number {
  const bytes = (n: number) => (n < 0 ? Encoder.sizeOfVarInt(-1) : Encoder.sizeOfVarInt(n) + n);
  return 1 + Encoder.sizeOfVarLong(timestampDelta) + Encoder.sizeOfVarInt(offsetDelta) + bytes(keyLength) + bytes(valueLength) + 1;
}

/** A key or value the fast encoders write as kafkajs does (others take kafkajs's own code). */
function plainBytes(v: unknown): boolean {
  return v == null || typeof v === 'string' || Buffer.isBuffer(v);
}

/** Writes one header-less record with body size `body` (recordBodySize), as kafkajs's Record v0 does. */
function writeRecord(e: KafkajsEncoder, body: number, timestampDelta: number, offsetDelta: number, key: unknown, value: unknown): void {
  e.writeVarInt(body).writeInt8(0).writeVarLong(timestampDelta).writeVarInt(offsetDelta).writeVarIntBytes(key).writeVarIntBytes(value);
  e.writeVarInt(0); // no headers: an empty varint array
}

let originalRecord: RecordEncoder;
function encodeRecord(args: RecordArgs): KafkajsEncoder {
  const { offsetDelta = 0, timestampDelta = 0, key, value, headers = {} } = args;
  // Headers, and keys or values that are neither strings nor Buffers: kafkajs's own encoder.
  if (!plainMessage({ key, value, headers }) || typeof timestampDelta !== 'number') return originalRecord(args);
  const body = recordBodySize(timestampDelta, offsetDelta, byteLengthOf(key), byteLengthOf(value));
  const e = exactEncoder(Encoder.sizeOfVarInt(body) + body);
  writeRecord(e, body, timestampDelta, offsetDelta, key, value);
  return e;
}
replaceModule<RecordEncoder>('record', 'src/protocol/recordBatch/record/v0/index.js', (original) => {
  originalRecord = original;
  return encodeRecord;
});

/** CRC-32C (Castagnoli), slice-by-8: tables T[k][b] = CRC of byte b followed by k zero bytes. */
const CRC_TABLES = (() => {
  const t = Array.from({ length: 8 }, () => new Int32Array(256));
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[0]![b] = c;
  }
  for (let b = 0; b < 256; b++) for (let k = 1; k < 8; k++) t[k]![b] = (t[k - 1]![b]! >>> 8) ^ t[0]![t[k - 1]![b]! & 0xff]!;
  return t;
})();

export function crc32cSliceBy8(buf: Buffer): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES as [
    Int32Array,
    Int32Array,
    Int32Array,
    Int32Array,
    Int32Array,
    Int32Array,
    Int32Array,
    Int32Array,
  ];
  let crc = -1;
  let i = 0;
  const n = buf.length;
  const end8 = n - (n & 7);
  for (; i < end8; i += 8) {
    const lo = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      t7[lo & 0xff]! ^
      t6[(lo >>> 8) & 0xff]! ^
      t5[(lo >>> 16) & 0xff]! ^
      t4[lo >>> 24]! ^
      t3[buf[i + 4]!]! ^
      t2[buf[i + 5]!]! ^
      t1[buf[i + 6]!]! ^
      t0[buf[i + 7]!]!;
  }
  for (; i < n; i++) crc = t0[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

// The record batch encoder takes `crc32C/index.js` (an unsigned wrapper of the byte-wise `crc32C.js`).
replaceModule<(buf: Buffer) => number>('crc32C', 'src/protocol/recordBatch/crc32C/index.js', () => crc32cSliceBy8);

/*
 * 3. Produce requests (v3, which v4-v7 reuse) and the request frame: kafkajs builds every
 *    record as an Encoder of its own, then copies it into the batch, the batch into the
 *    partition, the partition into the topic, the topic into the request and the request into
 *    its frame, each through buffers grown by doubling. The replacement sizes an uncompressed
 *    request exactly and writes every record straight into it; compressed requests, and records
 *    with headers or keys and values that are neither strings nor Buffers, take kafkajs's own
 *    encoder. Same bytes (the test compares them on random requests).
 */

interface FullEncoder extends KafkajsEncoder {
  writeInt16(v: number): FullEncoder;
  writeInt32(v: number): FullEncoder;
  writeUInt32(v: number): FullEncoder;
  writeInt64(v: unknown): FullEncoder;
  writeString(v: string | null): FullEncoder;
  writeBufferInternal(b: Buffer): void;
  readonly buffer: Buffer;
}
interface ProduceMessage {
  key?: unknown;
  value?: unknown;
  headers?: Record<string, unknown>;
  timestamp?: number | string | null;
}
interface ProducePartition {
  partition: number;
  firstSequence?: number;
  messages: ProduceMessage[];
}
interface ProduceArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: { topic: string; partitions: ProducePartition[] }[];
}
type ProduceRequest = { apiKey: number; apiVersion: number; apiName: string; expectResponse(): boolean; encode(): Promise<unknown> };
type ProduceV3 = (args: ProduceArgs) => ProduceRequest;

/** Plain: no headers, key and value strings, Buffers or null (what the fast encoders write). */
function plainMessage(m: { key?: unknown; value?: unknown; headers?: Record<string, unknown> }): boolean {
  if (!plainBytes(m.key) || !plainBytes(m.value)) return false;
  if (m.headers != null) for (const _ in m.headers) return false;
  return true;
}

/** Fixed bytes of one partition's record set before its records (partition ... record count). */
const RECORD_SET_HEAD = 4 + 4 + 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;

function encodeProduceV3(args: ProduceArgs): FullEncoder | undefined {
  const { acks, timeout, transactionalId = null, producerId = -1, producerEpoch = 0, compression = 0, topicData } = args;
  if (compression !== 0) return undefined;
  for (const t of topicData) for (const p of t.partitions) for (const m of p.messages) if (!plainMessage(m)) return undefined;
  // Timestamps exactly as kafkajs's partitionsEncoder takes them (its sort is lexicographic).
  const plans = topicData.map((t) =>
    t.partitions.map((p) => {
      const dateNow = Date.now();
      const stamps = p.messages
        .map((m) => m.timestamp)
        .filter((ts) => ts != null)
        .sort();
      const timestamps = stamps.length === 0 ? [dateNow] : stamps;
      const first = timestamps[0]!;
      const max = timestamps[timestamps.length - 1]!;
      const deltas = p.messages.map((m) => ((m.timestamp || dateNow) as number) - (first as number));
      // Record body sizes, once: they size the request and prefix each record.
      const bodies = p.messages.map((m, i) => recordBodySize(deltas[i]!, i, byteLengthOf(m.key), byteLengthOf(m.value)));
      let size = RECORD_SET_HEAD;
      for (const body of bodies) size += Encoder.sizeOfVarInt(body) + body;
      return { first, max, deltas, bodies, size };
    }),
  );
  let size = 2 + (transactionalId == null ? 0 : Buffer.byteLength(transactionalId)) + 2 + 4 + 4;
  topicData.forEach((t, ti) => {
    size += 2 + Buffer.byteLength(t.topic) + 4;
    for (const plan of plans[ti]!) size += plan.size;
  });
  const e = exactEncoder(size) as FullEncoder;
  e.writeString(transactionalId).writeInt16(acks).writeInt32(timeout).writeInt32(topicData.length);
  topicData.forEach((t, ti) => {
    e.writeString(t.topic).writeInt32(t.partitions.length);
    t.partitions.forEach((p, pi) => {
      const plan = plans[ti]![pi]!;
      const recordSetSize = plan.size - 8; // after partition and size
      const batchSize = recordSetSize - 12; // after firstOffset and length
      e.writeInt32(p.partition).writeInt32(recordSetSize).writeInt64(0).writeInt32(batchSize);
      e.writeInt32(0).writeInt8(2); // partitionLeaderEpoch, magic
      const crcAt = e.offset;
      e.writeUInt32(0); // CRC-32C of the batch body, written below
      const bodyAt = e.offset;
      const attributes = transactionalId ? 16 : 0;
      e.writeInt16(attributes)
        .writeInt32(p.messages.length - 1)
        .writeInt64(plan.first)
        .writeInt64(plan.max)
        .writeInt64(producerId)
        .writeInt16(producerEpoch)
        .writeInt32(p.firstSequence ?? 0)
        .writeInt32(p.messages.length);
      p.messages.forEach((m, i) => writeRecord(e, plan.bodies[i]!, plan.deltas[i]!, i, m.key, m.value));
      e.buf.writeUInt32BE(crc32cSliceBy8(e.buf.subarray(bodyAt, e.offset)), crcAt);
    });
  });
  if (e.offset !== size) throw new Error(`produce request encoded to ${e.offset} bytes, sized ${size}`);
  return e;
}

replaceModule<ProduceV3>('produceV3', 'src/protocol/requests/produce/v3/request.js', (originalProduceV3) => (args) => {
  const request = originalProduceV3(args);
  const original = request.encode;
  return { ...request, encode: async () => encodeProduceV3(args) ?? original() };
});

// The request frame: size, api key and version, correlation id, client id, then the payload,
// in one buffer of the right size.
type FrameArgs = {
  correlationId: number;
  clientId: string | null;
  request: { apiKey: number; apiVersion: number; encode(): Promise<unknown> };
};
replaceModule<(args: FrameArgs) => Promise<FullEncoder>>(
  'requestFrame',
  'src/protocol/request.js',
  () =>
    async ({ correlationId, clientId, request: { apiKey, apiVersion, encode } }) => {
      const payload = (await encode()) as FullEncoder;
      const body = payload.buffer;
      const size = 2 + 2 + 4 + 2 + (clientId == null ? 0 : Buffer.byteLength(clientId)) + body.length;
      const e = exactEncoder(4 + size) as FullEncoder;
      e.writeInt32(size).writeInt16(apiKey).writeInt16(apiVersion).writeInt32(correlationId).writeString(clientId);
      e.writeBufferInternal(body);
      return e;
    },
);

/*
 * 4. The request queue's throttle check: while nothing is pending and the broker never throttled,
 *    kafkajs schedules it `throttledUntil - Date.now()` ms from now, about minus the epoch: Node
 *    runs such a timer after 1 ms, and Node 24 also prints a TimeoutNegativeWarning on stderr of
 *    every process (once), which broke `lk produce`'s clean output. The same delay, at least 1 ms:
 *    what Node does with it anyway, without the warning.
 */
type RequestQueueLike = {
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  pending: unknown[];
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
};
/** kafkajs's CHECK_PENDING_REQUESTS_INTERVAL (src/network/requestQueue/index.js). */
const CHECK_PENDING_REQUESTS_INTERVAL = 10;
const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueueLike };
const originalSchedule = RequestQueue.prototype.scheduleCheckPendingRequests;
RequestQueue.prototype.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: RequestQueueLike): void {
  let scheduleAt = this.throttledUntil - Date.now();
  if (!this.throttleCheckTimeoutId) {
    if (this.pending.length > 0) scheduleAt = scheduleAt > 0 ? scheduleAt : CHECK_PENDING_REQUESTS_INTERVAL;
    this.throttleCheckTimeoutId = setTimeout(
      () => {
        this.throttleCheckTimeoutId = null;
        this.checkPendingRequests();
      },
      Math.max(1, scheduleAt),
    );
  }
};
KAFKAJS_PATCHES.set('scheduleCheckPendingRequests', {
  original: originalSchedule,
  replacement: RequestQueue.prototype.scheduleCheckPendingRequests,
});
