/**
 * kafkajs against the real broker, as lambda-kappa runs it: the compatibility probe
 * (scripts/kafkajs-compat-probe.mjs: produce, consumer groups and rebalancing, seeks,
 * timestamps, transactions with sendOffsets, read_committed filtering, the protocol versions the
 * broker still serves) with kafkajs's load-time patches installed. Every check must pass.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { testBrokers } from '../../../test/helpers.ts';

const RUN_TS = fileURLToPath(new URL('../../../bin/run-ts.js', import.meta.url));
const PROBE = fileURLToPath(new URL('../../../scripts/kafkajs-compat-probe.mjs', import.meta.url));

describe('kafkajs compatibility probe (patched client, real broker)', () => {
  it('passes every check', async () => {
    const child = spawn(process.execPath, [RUN_TS, PROBE, '--brokers', testBrokers()], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(out).toMatch(/kafkajs 2\.2\.4 \(patched for 2\.2\.4: [a-zA-Z, 0-9]+\)/);
    expect(out, out.slice(-3000)).toMatch(/\n(\d+) passed, 0 failed/);
    expect(code, out.slice(-3000)).toBe(0);
  });
});
