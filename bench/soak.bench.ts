/**
 * npm run bench:soak — 180 days of event time through the speed layer and serving at full speed:
 * does memory stay flat once retention has taken hold (issue 16, part 3)?
 *
 * In one process per run (runBenchWorker), with no broker in between (a broker would make 180
 * days take days): the speed layer's own state code (StateRegistry: apply, and the capture a
 * checkpoint commits, rows and tombstones, with its full or delta snapshot encoded) feeds
 * serving's own view code (applySpeedViewRecord, the materializer's reading of each record, into
 * a VersionView with the version's retention, evicting after each batch as the materializer does).
 * Events: the demo's metric file (3 metrics on minute, hour and day windows), 10 events per
 * simulated minute over 2 partitions (20 campaigns, 200 ads, 5,000 users), a checkpoint every
 * simulated hour. Resident memory per simulated month (30 days): its peak (sampled after every
 * checkpoint: the periodic full snapshots are the spikes) and, after a full GC at the month's end,
 * RSS and the heap plus array buffers (serving's typed arrays live outside the heap).
 *
 *   (a) retention as the metric file's defaults (minute 7d, hour 90d, day 1825d);
 *   (b) the baseline, measured in the same run: nothing expires (every size kept 36500d), over
 *       the first 90 days only (LK_SOAK_BASELINE_DAYS): without retention the rows only grow,
 *       and the ratio at day 90 says what retention saves by then.
 *
 * Prints, per month: windows the speed state holds (open + closed awaiting expiry), rows serving
 * holds, RSS and heap; then (a)'s last month over its third (aim: within 10 %, flat after the
 * 90-day hour horizon) and (a) over (b) at the baseline's last month. LK_SOAK_DAYS (default
 * 180) and LK_SOAK_EVENTS_PER_MINUTE (default 10) resize it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { LogRecord } from '../services/log/eventLog.ts';
import { partitionForKey } from '../services/log/partitioner.ts';
import { parseMetricDefinitions } from '../services/metrics/definitions.ts';
import { metricsFingerprint } from '../services/versions/metricChanges.ts';
import { seededRandom } from '../services/ingest/generator.ts';
import { applySpeedViewRecord } from '../serving/views/speedMaterializer.ts';
import { VersionView } from '../serving/views/versionView.ts';
import { ViewRetention } from '../serving/views/viewRetention.ts';
import { StateRegistry, type ChainInfo } from '../streaming/threads/stateRegistry.ts';
import { fmtMiB, machineLine, runBenchWorker } from './lib.ts';

const DAY = 86_400_000;
const MIN = 60_000;
const PARTITIONS = 2;
const MONTH_DAYS = 30;

interface MonthRow {
  month: number;
  days: number;
  events: number;
  speedWindows: number;
  servingRows: number;
  /** Largest RSS seen during the month (sampled after every checkpoint). */
  peakRssBytes: number;
  /** RSS, heap and array buffers after a full GC at the month's end. */
  rssBytes: number;
  heapBytes: number;
  arrayBufferBytes: number;
  seconds: number;
}

function forceGc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

async function worker(mode: 'retention' | 'baseline', days: number, perMinute: number): Promise<MonthRow[]> {
  let yaml = readFileSync(fileURLToPath(new URL('../metrics.yaml', import.meta.url)), 'utf8');
  if (mode === 'baseline') yaml = yaml.replace('metrics:\n', 'retention: { minute: 36500d, hour: 36500d, day: 36500d }\nmetrics:\n');
  const defs = parseMetricDefinitions(yaml, 'metrics.yaml');
  const store = mkdtempSync(join(tmpdir(), 'lk-soak-'));
  const registry = new StateRegistry({
    definitions: defs.metrics,
    semantics: { outOfOrdernessMs: 5000, dedupHorizonMs: DAY + 2 * 3_600_000 },
    placement: { homePartitions: PARTITIONS },
    metricsFingerprint: metricsFingerprint(defs.metrics),
  });
  const view = new VersionView('soak', new ViewRetention(defs.metrics));
  const chains: ChainInfo[] = [];
  const offsets: number[] = [];
  for (let p = 0; p < PARTITIONS; p++) {
    registry.open(p, null, 0);
    chains.push({ length: 0, rows: 0, last: null, lastName: null, names: [] });
    offsets.push(0);
  }
  const rand = seededRandom(16_180);
  const start = Date.UTC(2026, 0, 1);
  const rows: MonthRow[] = [];
  const began = Date.now();
  let events = 0;
  let seq = 0;
  let peakRss = 0;
  for (let hour = 0; hour < days * 24; hour++) {
    const batches: LogRecord[][] = Array.from({ length: PARTITIONS }, () => []);
    for (let m = 0; m < 60; m++) {
      for (let e = 0; e < perMinute; e++) {
        const ts = start + hour * 3_600_000 + m * MIN + Math.floor((e * MIN) / perMinute);
        const r = rand();
        const type = r < 0.8 ? 'impression' : r < 0.95 ? 'click' : 'conversion';
        const campaign = Math.floor(rand() * 20);
        const ad = campaign * 10 + Math.floor(rand() * 10);
        const id = `e${seq++}`;
        const p = partitionForKey(id, PARTITIONS);
        const value = `{"id":"${id}","type":"${type}","ts":"${new Date(ts).toISOString()}","campaign_id":"c${campaign}","ad_id":"a${ad}","user_id":"u${Math.floor(rand() * 5000)}","cost":${type === 'impression' ? 0 : 0.25}}`;
        batches[p]!.push({
          topic: 'events',
          partition: p,
          offset: offsets[p]!++,
          key: Buffer.from(id),
          value: Buffer.from(value),
          timestamp: ts,
          headers: {},
        });
        events++;
      }
    }
    // A checkpoint per partition per simulated hour, read by serving as the materializer reads it.
    for (let p = 0; p < PARTITIONS; p++) {
      registry.applyRecords(p, batches[p]!, offsets[p]!);
      const capture = registry.capture(p, chains[p]!);
      if (!capture) continue;
      // The chain as the checkpoint's task keeps it (snapshot names as the store would give them).
      const name = `${capture.position}-${capture.header.kind === 'full' ? 'f' : 'd'}`;
      chains[p] =
        capture.header.kind === 'full'
          ? { length: 1, rows: 0, last: capture.position, lastName: name, names: [name] }
          : {
              length: chains[p]!.length + 1,
              rows: capture.header.chainRows,
              last: capture.position,
              lastName: name,
              names: [...chains[p]!.names, name],
            };
      const values = Buffer.from(capture.rowValues.buffer, capture.rowValues.byteOffset, capture.rowValues.byteLength);
      capture.rowKeys.forEach((key, i) =>
        applySpeedViewRecord(view, Buffer.from(key), values.subarray(i === 0 ? 0 : capture.rowValueEnds[i - 1]!, capture.rowValueEnds[i]!)),
      );
      for (const key of capture.tombstoneKeys) applySpeedViewRecord(view, Buffer.from(key), null);
      view.evictExpired();
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
    }
    if ((hour + 1) % (MONTH_DAYS * 24) === 0 || hour + 1 === days * 24) {
      forceGc();
      let speedWindows = 0;
      for (let p = 0; p < PARTITIONS; p++) speedWindows += registry.stats(p)!.windows + registry.heldWindows(p);
      const mem = process.memoryUsage();
      const row: MonthRow = {
        month: rows.length + 1,
        days: (hour + 1) / 24,
        events,
        speedWindows,
        servingRows: view.speedRowCount(),
        peakRssBytes: Math.max(peakRss, mem.rss),
        rssBytes: mem.rss,
        heapBytes: mem.heapUsed,
        arrayBufferBytes: mem.arrayBuffers,
        seconds: (Date.now() - began) / 1000,
      };
      rows.push(row);
      peakRss = 0;
      process.stderr.write(
        `  [${mode}] month ${row.month}: ${row.speedWindows} speed windows, ${row.servingRows} serving rows, peak RSS ${fmtMiB(row.peakRssBytes)}, after GC ${fmtMiB(row.rssBytes)}\n`,
      );
    }
  }
  rmSync(store, { recursive: true, force: true });
  return rows;
}

async function main(): Promise<void> {
  const days = Number(process.env.LK_SOAK_DAYS ?? 180);
  const perMinute = Number(process.env.LK_SOAK_EVENTS_PER_MINUTE ?? 10);
  const self = fileURLToPath(import.meta.url);
  if (process.argv[2] === '--worker') {
    const mode = process.argv[3] as 'retention' | 'baseline';
    const baselineDays = Math.min(days, Number(process.env.LK_SOAK_BASELINE_DAYS ?? 90));
    const rows = await worker(mode, mode === 'baseline' ? baselineDays : days, perMinute);
    console.log(JSON.stringify(rows));
    return;
  }
  console.log(`bench:soak — ${days} days of event time, ${perMinute} events per simulated minute, ${PARTITIONS} partitions`);
  console.log(machineLine());
  const kept = await runBenchWorker<MonthRow[]>(self, ['retention'], 'soak (retention)');
  const base = await runBenchWorker<MonthRow[]>(self, ['baseline'], 'soak (baseline)');
  const line = (r: MonthRow, b: MonthRow | undefined) =>
    `| ${r.month} | ${r.days} | ${r.events.toLocaleString('en-US')} | ${r.speedWindows.toLocaleString('en-US')} | ${r.servingRows.toLocaleString('en-US')} | ${fmtMiB(r.peakRssBytes)} | ${fmtMiB(r.rssBytes)} | ${fmtMiB(r.heapBytes + r.arrayBufferBytes)} | ${b ? `${b.servingRows.toLocaleString('en-US')} / ${fmtMiB(b.peakRssBytes)}` : '-'} |`;
  console.log('');
  console.log(
    '| month | days | events | speed windows held | serving rows held | peak RSS | RSS after GC | heap + array buffers after GC | baseline (no expiry): serving rows / peak RSS |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  kept.forEach((r, i) => console.log(line(r, base[i])));
  const third = kept[2];
  const last = kept.at(-1)!;
  console.log('');
  if (third)
    console.log(
      `last month over the third: peak RSS ${(last.peakRssBytes / third.peakRssBytes).toFixed(3)} (aim: within 0.90..1.10), ` +
        `RSS after GC ${(last.rssBytes / third.rssBytes).toFixed(3)}, heap + array buffers ${((last.heapBytes + last.arrayBufferBytes) / (third.heapBytes + third.arrayBufferBytes)).toFixed(3)}, serving rows ${(last.servingRows / third.servingRows).toFixed(3)}`,
    );
  const b = base.at(-1)!;
  const same = kept[b.month - 1]!;
  console.log(
    `with retention over the baseline at month ${b.month} (day ${b.days}): peak RSS ${(same.peakRssBytes / b.peakRssBytes).toFixed(2)}, serving rows ${(same.servingRows / b.servingRows).toFixed(2)}`,
  );
  console.log(`wall time: ${last.seconds.toFixed(0)} s with retention (${days} days), ${b.seconds.toFixed(0)} s baseline (${b.days} days)`);
}

await main();
