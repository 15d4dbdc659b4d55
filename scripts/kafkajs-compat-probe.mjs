#!/usr/bin/env node
// kafkajs <-> broker compatibility probe.
//
// Runs, against a RUNNING broker, every kafkajs feature lambda-kappa relies on
// and prints one PASS/FAIL line per check (with the error text), then a
// summary. Exit code 0 only if everything passed.
//
//   node scripts/kafka.mjs start                       # or any broker
//   npm run kafka:probe -- [--brokers 127.0.0.1:9092] [--json out.json]
//
// Brokers: --brokers, else KAFKA_BROKERS, else 127.0.0.1:${LK_KAFKA_PORT:-9092}.
// It also asks the broker for its ApiVersions and compares them with the
// request versions kafkajs implements, which is what breaks first when a new
// Kafka line drops old protocol versions (KIP-896 in 4.0).
// Everything it creates (topics lk-compat-<run>-*, groups) is deleted at the end.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';

// The probe checks the client lambda-kappa runs: kafkajs with its load-time patches, which must
// be installed before kafkajs loads (run it as `npm run kafka:probe`, through tsx).
const { KAFKAJS_PATCHES, PATCHED_KAFKAJS_VERSION } = await import('../services/log/kafka/kafkajsPatches.ts');
const { default: kafkajs } = await import('kafkajs');

const { Kafka, logLevel, Partitioners, CompressionTypes } = kafkajs;
const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------
// args

const argv = process.argv.slice(2);
const arg = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const brokers = arg('--brokers') ?? process.env.KAFKA_BROKERS ?? `127.0.0.1:${process.env.LK_KAFKA_PORT ?? 9092}`;
const jsonOut = arg('--json');
const CHECK_TIMEOUT_MS = Number(arg('--check-timeout-ms') ?? 60_000);

const run = randomBytes(3).toString('hex');
const T = {
  events: `lk-compat-${run}-events`, // 6 partitions, retention.ms=-1
  compact: `lk-compat-${run}-compact`, // cleanup.policy=compact
  txIn: `lk-compat-${run}-tx-in`,
  txOut: `lk-compat-${run}-tx-out`, // 1 partition so ordering proves read_committed filtering
};
const G = {
  main: `lk-compat-${run}-g-main`,
  rebalance: `lk-compat-${run}-g-rebalance`,
  tx: `lk-compat-${run}-g-tx`,
  rc: `lk-compat-${run}-g-read-committed`,
  ru: `lk-compat-${run}-g-read-uncommitted`,
  resume: `lk-compat-${run}-g-main`, // same as main on purpose (resume from committed)
};

// collect kafkajs ERROR/WARN logs as evidence instead of printing them inline
const kjsLogs = [];
const logCreator =
  () =>
  ({ level, label, log }) => {
    if (level <= logLevel.WARN) kjsLogs.push(`${label} [${log.logger ?? ''}] ${log.message}${log.error ? `: ${log.error}` : ''}`);
  };
const kafka = new Kafka({
  clientId: 'lk-compat-probe',
  brokers: brokers.split(',').map((s) => s.trim()),
  logLevel: logLevel.WARN,
  logCreator,
  connectionTimeout: 5000,
  requestTimeout: 30_000,
  retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 3000 },
});

// ---------------------------------------------------------------------------
// tiny harness

const results = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}
function errText(e) {
  if (!e) return String(e);
  const parts = [`${e.name ?? 'Error'}: ${e.message}`];
  if (e.type) parts.push(`type=${e.type}`);
  if (e.code !== undefined) parts.push(`code=${e.code}`);
  if (e.errors?.length) parts.push(`errors=[${e.errors.map((x) => `${x.type ?? x.name}: ${x.message}`).join('; ')}]`);
  if (e.originalError) parts.push(`cause=${errText(e.originalError)}`);
  return parts.join(' ');
}
async function check(name, fn, { timeoutMs = CHECK_TIMEOUT_MS } = {}) {
  const t0 = Date.now();
  let timer;
  try {
    const detail = await Promise.race([
      fn(),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    results.push({ name, ok: true, ms: Date.now() - t0, detail: detail ?? '' });
    console.log(`PASS  ${name} (${Date.now() - t0} ms)${detail ? ` - ${detail}` : ''}`);
    return true;
  } catch (e) {
    results.push({ name, ok: false, ms: Date.now() - t0, error: errText(e) });
    console.log(`FAIL  ${name} (${Date.now() - t0} ms) - ${errText(e)}`);
    return false;
  } finally {
    clearTimeout(timer);
  }
}
/** Resolves when pred() is true; polls. */
async function until(pred, what, timeoutMs = 30_000, every = 100) {
  const t0 = Date.now();
  for (;;) {
    if (await pred()) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

// ---------------------------------------------------------------------------
// raw ApiVersions v0 (independent of kafkajs' own negotiation)

function brokerApiVersions(hostPort) {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve, reject) => {
    const clientId = Buffer.from('lk-compat-probe');
    const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length);
    let o = 0;
    o = body.writeInt16BE(18, o); // ApiVersions
    o = body.writeInt16BE(0, o); // v0
    o = body.writeInt32BE(1, o); // correlation id
    o = body.writeInt16BE(clientId.length, o);
    clientId.copy(body, o);
    const size = Buffer.alloc(4);
    size.writeInt32BE(body.length);
    const sock = connect({ host, port: Number(port) });
    const chunks = [];
    sock.setTimeout(5000, () => {
      sock.destroy();
      reject(new Error('ApiVersions timeout'));
    });
    sock.on('error', reject);
    sock.on('connect', () => sock.write(Buffer.concat([size, body])));
    sock.on('data', (d) => {
      chunks.push(d);
      const buf = Buffer.concat(chunks);
      if (buf.length < 4 || buf.length < 4 + buf.readInt32BE(0)) return;
      sock.destroy();
      let p = 4 + 4; // size, correlation id
      const errorCode = buf.readInt16BE(p);
      p += 2;
      const n = buf.readInt32BE(p);
      p += 4;
      const apis = {};
      for (let i = 0; i < n; i++) {
        apis[buf.readInt16BE(p)] = { min: buf.readInt16BE(p + 2), max: buf.readInt16BE(p + 4) };
        p += 6;
      }
      resolve({ errorCode, apis });
    });
  });
}

function kafkajsImplemented() {
  const apiKeys = require('kafkajs/src/protocol/requests/apiKeys.js');
  const { requests } = require('kafkajs/src/protocol/requests/index.js');
  const out = [];
  for (const [name, key] of Object.entries(apiKeys)) {
    const versions = (requests[name]?.versions ?? []).map(Number);
    if (versions.length) out.push({ name, key, min: Math.min(...versions), max: Math.max(...versions) });
  }
  return out;
}

// ---------------------------------------------------------------------------
// checks

const admin = kafka.admin();
const closers = [];
const track = (client) => {
  closers.push(() => client.disconnect());
  return client;
};

const N = 60; // messages on the 6-partition topic
const baseTs = Date.now() - 10 * 60_000; // explicit, distinct timestamps, 1 s apart
const consumedMain = new Map(); // `${p}:${o}` -> {key,value,headers,timestamp}
let committedMain; // partition -> committed offset

async function main() {
  console.log(
    `kafkajs ${require('kafkajs/package.json').version} (patched for ${PATCHED_KAFKAJS_VERSION}: ${[...KAFKAJS_PATCHES.keys()].join(', ')}) compatibility probe against ${brokers} (run ${run})`,
  );

  await check('ApiVersions: every API kafkajs uses overlaps the broker range', async () => {
    const { errorCode, apis } = await brokerApiVersions(brokers.split(',')[0].trim());
    assert(errorCode === 0, `ApiVersions error code ${errorCode}`);
    const rows = [];
    const bad = [];
    for (const k of kafkajsImplemented()) {
      const b = apis[k.key];
      if (!b) {
        rows.push(`${k.name}: broker-missing`);
        continue;
      }
      const chosen = Math.min(k.max, b.max);
      rows.push(`${k.name} v${chosen} (kafkajs ${k.min}-${k.max}, broker ${b.min}-${b.max})`);
      if (chosen < b.min) bad.push(`${k.name}: kafkajs max v${k.max} < broker min v${b.min}`);
    }
    console.log(`      negotiated: ${rows.join(', ')}`);
    assert(bad.length === 0, bad.join('; '));
    return `${rows.length} APIs checked`;
  });

  const connected = await check('admin.connect + describeCluster', async () => {
    await admin.connect();
    const c = await admin.describeCluster();
    assert(c.brokers.length >= 1, 'no brokers');
    return `clusterId=${c.clusterId} brokers=${c.brokers.map((b) => `${b.nodeId}@${b.host}:${b.port}`).join(',')} controller=${c.controller}`;
  });
  if (!connected) return;

  await check('admin.createTopics: 6 partitions + retention.ms=-1, compact topic, tx topics', async () => {
    const created = await admin.createTopics({
      waitForLeaders: true,
      topics: [
        {
          topic: T.events,
          numPartitions: 6,
          replicationFactor: 1,
          configEntries: [{ name: 'retention.ms', value: '-1' }],
        },
        {
          topic: T.compact,
          numPartitions: 3,
          replicationFactor: 1,
          configEntries: [
            { name: 'cleanup.policy', value: 'compact' },
            { name: 'min.cleanable.dirty.ratio', value: '0.01' },
          ],
        },
        { topic: T.txIn, numPartitions: 2, replicationFactor: 1 },
        { topic: T.txOut, numPartitions: 1, replicationFactor: 1 },
      ],
    });
    assert(created === true, `createTopics returned ${created}`);
    const topics = await admin.listTopics();
    for (const t of Object.values(T)) assert(topics.includes(t), `listTopics lacks ${t}`);
    return 'created 4 topics';
  });

  await check('admin.createTopics on an existing topic returns false (TOPIC_ALREADY_EXISTS)', async () => {
    const r = await admin.createTopics({ topics: [{ topic: T.events, numPartitions: 6, replicationFactor: 1 }] });
    assert(r === false, `expected false, got ${r}`);
  });

  await check('admin.describeConfigs shows the topic configs', async () => {
    const r = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        { type: 2, name: T.events, configNames: ['retention.ms'] },
        { type: 2, name: T.compact, configNames: ['cleanup.policy'] },
      ],
    });
    const get = (name, key) =>
      r.resources.find((x) => x.resourceName === name)?.configEntries.find((c) => c.configName === key)?.configValue;
    assert(get(T.events, 'retention.ms') === '-1', `retention.ms=${get(T.events, 'retention.ms')}`);
    assert(get(T.compact, 'cleanup.policy') === 'compact', `cleanup.policy=${get(T.compact, 'cleanup.policy')}`);
    return 'retention.ms=-1, cleanup.policy=compact';
  });

  await check('admin.fetchTopicMetadata', async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: [T.events, T.compact] });
    const ev = topics.find((t) => t.name === T.events);
    assert(ev && ev.partitions.length === 6, `events partitions=${ev?.partitions.length}`);
    assert(
      ev.partitions.every((p) => p.leader >= 0 && p.replicas.length === 1 && p.isr.length === 1),
      'every partition has a leader, 1 replica, 1 ISR',
    );
    return `events: 6 partitions, leaders ${[...new Set(ev.partitions.map((p) => p.leader))].join(',')}`;
  });

  const sentByKey = new Map();
  await check('idempotent producer: sendBatch with keys/headers/timestamps (+gzip batch, compact topic)', async () => {
    const producer = track(
      kafka.producer({
        idempotent: true,
        createPartitioner: Partitioners.DefaultPartitioner,
        allowAutoTopicCreation: false,
      }),
    );
    await producer.connect();
    const mk = (i) => ({
      key: `user-${i % 12}`,
      value: JSON.stringify({ i, run }),
      timestamp: String(baseTs + i * 1000),
      headers: { 'lk-run': run, 'lk-i': String(i), 'content-type': 'application/json' },
    });
    let acked = 0;
    // three batches, the middle one gzip-compressed, plus the compact topic in one sendBatch
    for (const [from, to, compression] of [
      [0, 20, CompressionTypes.None],
      [20, 40, CompressionTypes.GZIP],
      [40, N, CompressionTypes.None],
    ]) {
      const msgs = [];
      for (let i = from; i < to; i++) {
        msgs.push(mk(i));
        sentByKey.set(String(i), mk(i));
      }
      const r = await producer.sendBatch({
        acks: -1,
        compression,
        topicMessages: [
          { topic: T.events, messages: msgs },
          ...(from === 0
            ? [
                {
                  topic: T.compact,
                  messages: ['a', 'b', 'a', 'c', 'a'].map((k, j) => ({ key: k, value: `v${j}` })),
                },
              ]
            : []),
        ],
      });
      acked += r.filter((x) => x.topicName === T.events).length;
      assert(
        r.every((x) => x.errorCode === 0),
        `errorCodes ${r.map((x) => x.errorCode)}`,
      );
    }
    // a plain send() as well
    const [single] = await producer.send({ topic: T.events, acks: -1, messages: [mk(N)] });
    sentByKey.set(String(N), mk(N));
    assert(single.errorCode === 0, `send errorCode ${single.errorCode}`);
    await producer.disconnect();
    return `${N + 1} messages, ${acked} partition acks in 3 batches`;
  });

  await check('admin.fetchTopicOffsets: high watermarks sum to messages sent', async () => {
    const offs = await admin.fetchTopicOffsets(T.events);
    assert(offs.length === 6, `partitions ${offs.length}`);
    const total = offs.reduce((s, p) => s + Number(p.high) - Number(p.low), 0);
    assert(total === N + 1, `sum(high-low)=${total}, expected ${N + 1}`);
    return offs.map((p) => `p${p.partition}:${p.low}-${p.high}`).join(' ');
  });

  await check('consumer group: join/subscribe/run (fromBeginning) sees all keys, headers, timestamps', async () => {
    const consumer = track(
      kafka.consumer({
        groupId: G.main,
        sessionTimeout: 10_000,
        heartbeatInterval: 500,
        maxWaitTimeInMs: 200,
        allowAutoTopicCreation: false,
      }),
    );
    let joined;
    consumer.on(consumer.events.GROUP_JOIN, (e) => (joined = e.payload));
    await consumer.connect();
    await consumer.subscribe({ topics: [T.events], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        consumedMain.set(`${partition}:${message.offset}`, {
          partition,
          offset: Number(message.offset),
          key: message.key?.toString(),
          value: message.value?.toString(),
          timestamp: message.timestamp,
          headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, v?.toString()])),
        });
      },
    });
    await until(() => consumedMain.size >= N + 1, `${N + 1} messages (have ${consumedMain.size})`);
    for (const m of consumedMain.values()) {
      const i = JSON.parse(m.value).i;
      const sent = sentByKey.get(String(i));
      assert(m.key === sent.key, `key ${m.key} != ${sent.key}`);
      assert(m.timestamp === sent.timestamp, `timestamp ${m.timestamp} != ${sent.timestamp}`);
      assert(m.headers['lk-i'] === String(i) && m.headers['lk-run'] === run, `headers ${JSON.stringify(m.headers)}`);
    }
    // same key -> same partition
    const byKey = new Map();
    for (const m of consumedMain.values()) {
      if (byKey.has(m.key)) assert(byKey.get(m.key) === m.partition, `key ${m.key} in 2 partitions`);
      byKey.set(m.key, m.partition);
    }

    // manual commit of everything consumed
    const last = new Map();
    for (const m of consumedMain.values()) last.set(m.partition, Math.max(last.get(m.partition) ?? -1, m.offset));
    await consumer.commitOffsets([...last].map(([partition, o]) => ({ topic: T.events, partition, offset: String(o + 1) })));
    committedMain = Object.fromEntries([...last].map(([p, o]) => [p, o + 1]));

    // seek: re-read the busiest partition from offset 1
    const [busy] = [...last].sort((a, b) => b[1] - a[1])[0];
    await consumer.stop();
    let seekHit;
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        if (partition === busy && seekHit === undefined) seekHit = Number(message.offset);
      },
    });
    consumer.seek({ topic: T.events, partition: busy, offset: '1' });
    await until(() => seekHit !== undefined, `a message from partition ${busy} after seek`);
    assert(seekHit === 1, `after seek(1) first message had offset ${seekHit}`);
    await consumer.disconnect();
    return `${consumedMain.size} messages across ${last.size} partitions; joined as ${joined?.memberId?.slice(0, 24)}..., leader=${joined?.isLeader}; committed; seek(p${busy}, 1) re-delivered offset 1`;
  });

  await check('admin.fetchOffsets(group) returns the committed offsets', async () => {
    const r = await admin.fetchOffsets({ groupId: G.main, topics: [T.events] });
    const got = Object.fromEntries(r[0].partitions.map((p) => [p.partition, Number(p.offset)]));
    const want = committedMain ?? {};
    assert(Object.keys(want).length > 0, 'nothing was committed by the previous check');
    for (const [p, o] of Object.entries(want)) assert(got[p] === o, `partition ${p}: ${got[p]} != ${o}`);
    return JSON.stringify(got);
  });

  await check('consumer group resumes from committed offsets (no redelivery)', async () => {
    const producer = track(kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner }));
    await producer.connect();
    await producer.send({
      topic: T.events,
      messages: [
        { key: 'resume-1', value: 'r1' },
        { key: 'resume-2', value: 'r2' },
      ],
    });
    await producer.disconnect();
    const consumer = track(kafka.consumer({ groupId: G.resume, heartbeatInterval: 500, maxWaitTimeInMs: 200 }));
    const got = [];
    await consumer.connect();
    await consumer.subscribe({ topics: [T.events], fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => got.push(message.value.toString()) });
    await until(() => got.length >= 2, 'the 2 new messages');
    await sleep(1000);
    await consumer.disconnect();
    assert(got.length === 2 && got.includes('r1') && got.includes('r2'), `got ${JSON.stringify(got)}`);
    return 'only the 2 new messages were delivered';
  });

  await check('admin.fetchTopicOffsetsByTimestamp', async () => {
    const mid = baseTs + Math.floor(N / 2) * 1000;
    const r = await admin.fetchTopicOffsetsByTimestamp(T.events, mid);
    assert(r.length === 6, `partitions ${r.length}`);
    for (const { partition, offset } of r) {
      // expected: first offset in partition whose timestamp >= mid
      const msgs = [...consumedMain.values()].filter((m) => m.partition === partition).sort((a, b) => a.offset - b.offset);
      const first = msgs.find((m) => Number(m.timestamp) >= mid);
      if (first) assert(Number(offset) === first.offset, `p${partition}: ${offset} != ${first.offset}`);
    }
    const future = await admin.fetchTopicOffsetsByTimestamp(T.events, Date.now() + 3600_000);
    const high = await admin.fetchTopicOffsets(T.events);
    for (const f of future) {
      assert(f.offset === high.find((h) => h.partition === f.partition).high, `future ts p${f.partition} != high`);
    }
    return r.map((p) => `p${p.partition}@${p.offset}`).join(' ');
  });

  await check('two consumers in one group rebalance 6 partitions (6 -> 3+3 -> 6)', async () => {
    const assignments = { a: [], b: [] };
    const mkC = (id) => {
      const c = track(
        kafka.consumer({
          groupId: G.rebalance,
          sessionTimeout: 10_000,
          heartbeatInterval: 300,
          maxWaitTimeInMs: 200,
          rebalanceTimeout: 20_000,
        }),
      );
      c.on(c.events.GROUP_JOIN, (e) => assignments[id].push(e.payload.memberAssignment[T.events] ?? []));
      return c;
    };
    const seen = new Set();
    const a = mkC('a');
    const b = mkC('b');
    await a.connect();
    await a.subscribe({ topics: [T.events], fromBeginning: true });
    await a.run({ eachMessage: async ({ partition, message }) => void seen.add(`${partition}:${message.offset}`) });
    await until(() => assignments.a.at(-1)?.length === 6, 'a to own 6 partitions');
    await b.connect();
    await b.subscribe({ topics: [T.events], fromBeginning: true });
    await b.run({ eachMessage: async ({ partition, message }) => void seen.add(`${partition}:${message.offset}`) });
    await until(
      () => assignments.b.at(-1)?.length > 0 && assignments.a.at(-1)?.length + assignments.b.at(-1)?.length === 6,
      `a+b to split 6 partitions (a=${JSON.stringify(assignments.a)}, b=${JSON.stringify(assignments.b)})`,
    );
    const split = `a=${JSON.stringify(assignments.a.at(-1))} b=${JSON.stringify(assignments.b.at(-1))}`;
    const overlap = assignments.a.at(-1).filter((p) => assignments.b.at(-1).includes(p));
    assert(overlap.length === 0, `overlap ${overlap}`);
    await until(() => seen.size >= N + 3, `all ${N + 3} messages consumed by the group (have ${seen.size})`);
    await b.disconnect();
    await until(() => assignments.a.at(-1)?.length === 6, 'a to own all 6 again after b left');
    await a.disconnect();
    return `${split}; after b left a=${JSON.stringify(assignments.a.at(-1))}; ${seen.size} msgs`;
  });

  await check('admin.listGroups + describeGroups', async () => {
    const { groups } = await admin.listGroups();
    const ids = groups.map((g) => g.groupId);
    assert(ids.includes(G.main) && ids.includes(G.rebalance), `groups ${ids}`);
    const d = await admin.describeGroups([G.main]);
    assert(d.groups[0].groupId === G.main, 'describeGroups');
    return `${groups.length} groups; ${G.main} state=${d.groups[0].state} protocolType=${d.groups[0].protocolType}`;
  });

  // --- transactions -------------------------------------------------------
  let txProducer;
  const txOk = await check('transactional producer: connect (InitProducerId with transactionalId)', async () => {
    txProducer = track(
      kafka.producer({
        transactionalId: `lk-compat-${run}-tx`,
        idempotent: true,
        maxInFlightRequests: 1,
        createPartitioner: Partitioners.DefaultPartitioner,
      }),
    );
    await txProducer.connect();
  });

  if (txOk) {
    await check('transaction: send + sendOffsets + commit', async () => {
      const tx = await txProducer.transaction();
      await tx.send({ topic: T.txOut, messages: [1, 2, 3].map((i) => ({ key: `c${i}`, value: `committed-${i}` })) });
      await tx.sendOffsets({
        consumerGroupId: G.tx,
        topics: [
          {
            topic: T.txIn,
            partitions: [
              { partition: 0, offset: '3' },
              { partition: 1, offset: '5' },
            ],
          },
        ],
      });
      await tx.commit();
      return '3 records + offsets for group committed';
    });

    await check('transaction: send + abort', async () => {
      const tx = await txProducer.transaction();
      await tx.send({ topic: T.txOut, messages: [1, 2].map((i) => ({ key: `a${i}`, value: `aborted-${i}` })) });
      await tx.sendOffsets({
        consumerGroupId: G.tx,
        topics: [{ topic: T.txIn, partitions: [{ partition: 0, offset: '99' }] }],
      });
      await tx.abort();
      return '2 records + offsets aborted';
    });

    await check('transaction: producer reusable after abort (send + commit)', async () => {
      const tx = await txProducer.transaction();
      await tx.send({ topic: T.txOut, messages: [{ key: 'c4', value: 'committed-4' }] });
      await tx.commit();
    });

    await check('admin.fetchOffsets for the transactional group: committed offsets only (aborted 99 not applied)', async () => {
      const r = await admin.fetchOffsets({ groupId: G.tx, topics: [T.txIn] });
      const got = Object.fromEntries(r[0].partitions.map((p) => [p.partition, p.offset]));
      assert(got[0] === '3' && got[1] === '5', `got ${JSON.stringify(got)}`);
      return JSON.stringify(got);
    });

    const readAll = async (groupId, readUncommitted, stopWhen) => {
      const c = track(kafka.consumer({ groupId, readUncommitted, heartbeatInterval: 500, maxWaitTimeInMs: 200 }));
      const got = [];
      await c.connect();
      await c.subscribe({ topics: [T.txOut], fromBeginning: true });
      await c.run({ eachMessage: async ({ message }) => void got.push(message.value.toString()) });
      try {
        await until(() => stopWhen(got), `expected records (got ${JSON.stringify(got)})`, 20_000);
        await sleep(1000); // anything else that would (wrongly) arrive
      } finally {
        await c.disconnect();
      }
      return got;
    };

    await check('readUncommitted:false consumer sees committed records, never aborted ones', async () => {
      const got = await readAll(G.rc, false, (g) => g.includes('committed-4'));
      assert(!got.some((v) => v.startsWith('aborted')), `saw aborted: ${JSON.stringify(got)}`);
      assert(
        JSON.stringify(got) === JSON.stringify(['committed-1', 'committed-2', 'committed-3', 'committed-4']),
        `got ${JSON.stringify(got)}`,
      );
      return JSON.stringify(got);
    });

    await check('control: readUncommitted:true consumer does see the aborted records', async () => {
      const got = await readAll(G.ru, true, (g) => g.includes('committed-4'));
      assert(got.includes('aborted-1') && got.includes('aborted-2'), `got ${JSON.stringify(got)}`);
      return JSON.stringify(got);
    });

    await check('read_committed consumer waits for an open transaction, then sees it after commit', async () => {
      const c = track(kafka.consumer({ groupId: `${G.rc}-open`, heartbeatInterval: 500, maxWaitTimeInMs: 200 }));
      const got = [];
      await c.connect();
      await c.subscribe({ topics: [T.txOut], fromBeginning: true });
      await c.run({ eachMessage: async ({ message }) => void got.push(message.value.toString()) });
      await until(() => got.includes('committed-4'), 'existing committed records');
      const tx = await txProducer.transaction();
      await tx.send({ topic: T.txOut, messages: [{ value: 'open-then-committed' }] });
      await sleep(2000);
      const beforeCommit = got.includes('open-then-committed');
      await tx.commit();
      await until(() => got.includes('open-then-committed'), 'record after commit', 15_000);
      await c.disconnect();
      assert(!beforeCommit, 'record of an open transaction was visible before commit');
      return 'invisible for 2 s while open, visible after commit';
    });

    await txProducer.disconnect().catch(() => {});
  }

  await check('admin.createPartitions (events 6 -> 8)', async () => {
    await admin.createPartitions({ topicPartitions: [{ topic: T.events, count: 8 }] });
    const t0 = Date.now();
    // New partitions get their leader asynchronously; until then ListOffsets answers
    // NOT_LEADER_FOR_PARTITION, which kafkajs' admin.fetchTopicOffsets does not retry.
    await until(async () => {
      const { topics } = await admin.fetchTopicMetadata({ topics: [T.events] });
      if (topics[0].partitions.length !== 8 || topics[0].partitions.some((p) => p.leader < 0)) return false;
      try {
        return (await admin.fetchTopicOffsets(T.events)).length === 8;
      } catch {
        return false;
      }
    }, '8 partitions with leaders that answer ListOffsets');
    return `8 partitions usable after ${Date.now() - t0} ms`;
  });

  await check('admin.deleteTopicRecords (DeleteRecords)', async () => {
    const offs = await admin.fetchTopicOffsets(T.events);
    const p = offs.find((x) => Number(x.high) > 1);
    await admin.deleteTopicRecords({ topic: T.events, partitions: [{ partition: p.partition, offset: '1' }] });
    const after = await admin.fetchTopicOffsets(T.events);
    assert(after.find((x) => x.partition === p.partition).low === '1', 'low watermark not moved to 1');
    return `p${p.partition} low watermark -> 1`;
  });

  await check('admin.deleteGroups', async () => {
    const r = await admin.deleteGroups(
      Object.values(G)
        .filter((g, i, a) => a.indexOf(g) === i)
        .concat(`${G.rc}-open`),
    );
    const bad = r.filter((x) => x.errorCode && x.errorCode !== 0 && x.error?.type !== 'GROUP_ID_NOT_FOUND');
    assert(bad.length === 0, JSON.stringify(bad));
    return `${r.length} groups`;
  });

  await check('admin.deleteTopics', async () => {
    await admin.deleteTopics({ topics: Object.values(T), timeout: 15_000 });
    await until(async () => {
      const left = (await admin.listTopics()).filter((t) => t.startsWith(`lk-compat-${run}`));
      return left.length === 0;
    }, 'topics to disappear from listTopics');
    return `${Object.values(T).length} topics deleted`;
  });
}

let fatal;
try {
  await main();
} catch (e) {
  fatal = e;
}
for (const close of closers) await close().catch(() => {});
await admin.disconnect().catch(() => {});

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
const uniqLogs = [...new Set(kjsLogs)];
if (uniqLogs.length) {
  console.log(`\nkafkajs WARN/ERROR log lines (${kjsLogs.length}, ${uniqLogs.length} distinct; first 15):`);
  for (const l of uniqLogs.slice(0, 15)) console.log(`  ${l.slice(0, 300)}`);
}
if (fatal) console.log(`\nprobe aborted: ${errText(fatal)}`);
if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify({ brokers, run, results, kafkajsLogs: uniqLogs }, null, 2)}\n`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed || fatal ? 1 : 0);
