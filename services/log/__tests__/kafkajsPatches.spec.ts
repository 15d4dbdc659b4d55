// The load-time replacements of kafkajs's encoders (services/log/kafka/kafkajsPatches.ts) write
// exactly the bytes kafkajs's own implementations write: compared here on random inputs, with
// the originals kept by the patch module. (The round trips through a real broker are in
// eventLog.contract.spec.ts and brokerRestart.spec.ts.)
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { KAFKAJS_PATCHES, PATCHED_KAFKAJS_VERSION, crc32cSliceBy8 } from '../kafka/kafkajsPatches.ts';

/** kafkajs's original of a patch, and ours. */
function patch<T>(name: string): { original: T; replacement: T } {
  const p = KAFKAJS_PATCHES.get(name);
  if (!p) throw new Error(`no kafkajs patch ${name}`);
  return p as { original: T; replacement: T };
}
type Frame = (a: object) => Promise<{ buffer: Buffer }>;
type Produce = (a: never) => { encode(): Promise<{ buffer: Buffer }> };
const kafkajsProduceV3 = (() => {
  const p = patch<Produce>('produceV3');
  return { original: p.original, patched: p.replacement };
})();
const kafkajsRequestFrame = (() => {
  const p = patch<Frame>('requestFrame');
  return { original: p.original, patched: p.replacement };
})();
import { seededRandom } from '../../ingest/generator.ts';

const require = createRequire(import.meta.url);
type Enc = { buffer: Buffer; writeUVarInt(v: number): Enc; writeVarLong(v: unknown): Enc };
const Encoder = require('kafkajs/src/protocol/encoder.js') as { new (): Enc; prototype: Enc };
const encodeRecord = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (a: object) => { buffer: Buffer };

const rand = seededRandom(2026);
const int = (max: number) => Math.floor(rand() * max);

function viaOriginal(method: 'writeUVarInt' | 'writeVarLong', value: unknown): Buffer {
  const e = new Encoder();
  patch<(this: Enc, v: unknown) => Enc>(method).original.call(e, value);
  return e.buffer;
}

describe('kafkajs encoder patches write the same bytes as kafkajs', () => {
  it('patch exactly the pinned kafkajs, every module in the registry', () => {
    expect((require('kafkajs/package.json') as { version: string }).version).toBe(PATCHED_KAFKAJS_VERSION);
    expect([...KAFKAJS_PATCHES.keys()].sort()).toEqual([
      'crc32C',
      'groupMessagesPerPartition',
      'produceV3',
      'record',
      'requestFrame',
      'scheduleCheckPendingRequests',
      'writeUVarInt',
      'writeVarLong',
    ]);
    // kafkajs's own require now gets the replacements.
    expect(require('kafkajs/src/protocol/recordBatch/crc32C/index.js')).toBe(crc32cSliceBy8);
  });

  it('varints and varlongs', () => {
    const values = [0, 1, -1, 63, 64, -64, -65, 127, 128, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, 2 ** 52 - 1, -(2 ** 52) + 1, 2 ** 53, 1.5];
    for (let i = 0; i < 2000; i++) values.push(int(2 ** 31) - 2 ** 30, int(2 ** 50) * (rand() < 0.5 ? -1 : 1), int(300));
    for (const v of values) {
      if (Number.isInteger(v) && Math.abs(v) <= 2 ** 31)
        expect(new Encoder().writeUVarInt(v).buffer, `uvarint ${v}`).toEqual(viaOriginal('writeUVarInt', v));
      if (Number.isInteger(v)) expect(new Encoder().writeVarLong(v).buffer, `varlong ${v}`).toEqual(viaOriginal('writeVarLong', v));
    }
  });

  it('records', () => {
    const pick = <T>(xs: T[]) => xs[int(xs.length)]!;
    const text = () => pick(['', 'a', 'e-42-7', 'Zoë ☕ 日本', 'x'.repeat(int(400))]);
    for (let i = 0; i < 3000; i++) {
      const args = {
        offsetDelta: int(100_000),
        timestampDelta: pick([0, int(1000), int(2 ** 40), -int(1000)]),
        key: pick([null, undefined, text(), Buffer.from(text())]),
        value: pick([null, text(), Buffer.from(text()), Buffer.alloc(0)]),
        ...(rand() < 0.2 ? { headers: pick([{}, { a: 'b' }, { lk: ['x', 'yy'] }, { 'dead-letter': Buffer.from('why') }]) } : {}),
      };
      expect(encodeRecord(args).buffer, JSON.stringify(args)).toEqual(
        patch<(a: object) => { buffer: Buffer }>('record').original(args).buffer,
      );
    }
  });

  it('CRC-32C', () => {
    expect(crc32cSliceBy8(Buffer.from('123456789'))).toBe(0xe3069283); // the standard check value
    for (let i = 0; i < 2000; i++) {
      const buf = Buffer.alloc(int(3000));
      for (let k = 0; k < buf.length; k++) buf[k] = int(256);
      expect(crc32cSliceBy8(buf)).toBe(patch<(b: Buffer) => number>('crc32C').original(buf));
    }
  });

  it('produce requests and their frames', async () => {
    const pick = <T>(xs: T[]) => xs[int(xs.length)]!;
    const text = () => pick(['a', 'e-42-7', 'Zoë ☕ 日本', 'x'.repeat(int(300))]);
    const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };
    let fast = 0;
    for (let i = 0; i < 300; i++) {
      const now = 1_764_600_000_000 + int(1e6);
      const message = () => ({
        key: pick([null, text(), Buffer.from(text())]),
        value: pick([null, text(), Buffer.from(text())]),
        ...(rand() < 0.3 ? { timestamp: pick([now + int(5000), String(now + int(5000))]) } : {}),
        ...(rand() < 0.002 ? { headers: { h: 'v' } } : {}),
      });
      const args = {
        acks: pick([-1, 1]),
        timeout: 30_000,
        transactionalId: pick([null, undefined, 'lk-speed-v1-p3']),
        producerId: pick([undefined, Long.fromValue(4242), Long.fromValue(-1)]),
        producerEpoch: int(5),
        compression: rand() < 0.05 ? 1 : 0,
        topicData: Array.from({ length: 1 + int(2) }, (_, t) => ({
          topic: `events-${t}`,
          partitions: Array.from({ length: 1 + int(4) }, (_, p) => ({
            partition: p,
            firstSequence: int(1000),
            messages: Array.from({ length: 1 + int(40) }, message),
          })),
        })),
      };
      // Date.now() is read during encoding: freeze it so that both sides see the same clock.
      const realNow = Date.now;
      Date.now = () => now;
      try {
        const expected = (await kafkajsProduceV3.original(args as never).encode()).buffer;
        const got = (await kafkajsProduceV3.patched(args as never).encode()).buffer;
        expect(got.equals(expected), `request ${i}`).toBe(true);
        if (args.compression === 0 && !args.topicData.some((t) => t.partitions.some((p) => p.messages.some((m) => 'headers' in m)))) fast++;
        const request = kafkajsProduceV3.patched(args as never);
        const frameArgs = { correlationId: int(1e6), clientId: pick(['lk', null, 'lk-speed-Zoë']), request };
        const a = (await kafkajsRequestFrame.original(frameArgs)).buffer;
        const b = (await kafkajsRequestFrame.patched(frameArgs)).buffer;
        expect(b.equals(a), `frame ${i}`).toBe(true);
      } finally {
        Date.now = realNow;
      }
    }
    expect(fast).toBeGreaterThan(100); // the fast path was exercised, not only the fallbacks
  });
});

describe('the request queue throttle check (no negative timer, the same delays)', () => {
  type Queue = { throttledUntil: number; throttleCheckTimeoutId: unknown; pending: unknown[]; checkPendingRequests(): void };
  const { original, replacement } = patch<(this: Queue) => void>('scheduleCheckPendingRequests');

  /** The delay a schedule call passes to setTimeout, and whether it set a timer at all. */
  function scheduled(fn: (this: Queue) => void, state: Omit<Queue, 'checkPendingRequests'>): number | null {
    const realSetTimeout = globalThis.setTimeout;
    let delay: number | null = null;
    globalThis.setTimeout = ((_: () => void, ms: number) => {
      delay = ms;
      return 1 as unknown as NodeJS.Timeout;
    }) as typeof setTimeout;
    try {
      fn.call({ ...state, checkPendingRequests: () => undefined });
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    return delay;
  }

  const now = Date.now();
  const states = [
    { throttledUntil: 0, throttleCheckTimeoutId: null, pending: [] },
    { throttledUntil: 0, throttleCheckTimeoutId: null, pending: [1] },
    { throttledUntil: now - 5000, throttleCheckTimeoutId: null, pending: [] },
    { throttledUntil: now + 60_000, throttleCheckTimeoutId: null, pending: [] },
    { throttledUntil: now + 60_000, throttleCheckTimeoutId: null, pending: [1, 2] },
    { throttledUntil: now + 60_000, throttleCheckTimeoutId: 7, pending: [1] },
  ];

  it.each(states)('%o', (state) => {
    const before = scheduled(original, state);
    const after = scheduled(replacement, state);
    if (before === null) expect(after).toBeNull();
    else {
      // Node runs any delay below 1 ms after 1 ms: the effective delays are equal.
      expect(after).toBeGreaterThanOrEqual(1);
      expect(Math.abs(after! - Math.max(1, before))).toBeLessThan(50);
    }
  });
});
