/**
 * The execution budget on a clock of the test's own (no timing): a request's resolver calls run
 * in slices, other work runs between the slices (the event loop is given back), the calls stay in
 * order, and the request is cut off, with its code and the flag's name, once its budget is spent.
 * Waiting for I/O is not counted.
 */
import { describe, expect, it } from 'vitest';
import type { GraphQLError } from 'graphql/index.js';
import { ExecutionBudget } from '../graphql/executionBudget.ts';

/**
 * A fake request: `calls` resolver calls made the way GraphQL makes root fields' calls (all at
 * once, then awaited). An async resolver does its work after its first await, as serving's do
 * (they await the request's view snapshot first).
 */
async function runRequest(budget: ExecutionBudget, calls: number, workMs: number, clock: { t: number }, trace: string[], async = false) {
  const results = [];
  for (let i = 1; i <= calls; i++) {
    const work = () => {
      trace.push(`call ${i}`);
      clock.t += workMs;
      return i;
    };
    const body = async ? async () => (await null, work()) : work;
    results.push(Promise.resolve(budget.run(body)));
  }
  return Promise.allSettled(results);
}

/** Another client: records a mark at every turn of the event loop until stopped. */
function otherClient(trace: string[]): { stop(): void } {
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    trace.push('other');
    setImmediate(tick);
  };
  setImmediate(tick);
  return { stop: () => (stopped = true) };
}

describe('the execution budget', () => {
  it('yields after each slice, lets other work run between slices, keeps the calls in order', async () => {
    const clock = { t: 0 };
    const yields: number[] = [];
    const budget = new ExecutionBudget({ budgetMs: 100, sliceMs: 10, now: () => clock.t, onYield: () => yields.push(clock.t) });
    const trace: string[] = [];
    const other = otherClient(trace);
    const settled = await runRequest(budget, 20, 4, clock, trace);
    other.stop();
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
    // 4 ms a call, 10 ms slices: calls 1-3 run at once (12 ms), then a yield before every third call.
    expect(yields).toEqual([12, 24, 36, 48, 60, 72]);
    expect(budget.yields).toBe(6);
    const calls = trace.filter((t) => t !== 'other');
    expect(calls).toEqual(Array.from({ length: 20 }, (_, i) => `call ${i + 1}`));
    // Between two slices the other client ran; within a slice it never did.
    const slices = trace
      .join(',')
      .split(/(?:,?other)+,?/)
      .filter((s) => s !== '');
    expect(slices).toEqual([
      'call 1,call 2,call 3',
      'call 4,call 5,call 6',
      'call 7,call 8,call 9',
      'call 10,call 11,call 12',
      'call 13,call 14,call 15',
      'call 16,call 17,call 18',
      'call 19,call 20',
    ]);
  });

  it('yields as well when resolvers do their work after an await (their calls wait for the earlier ones to settle)', async () => {
    const clock = { t: 0 };
    const yields: number[] = [];
    const budget = new ExecutionBudget({ budgetMs: 100, sliceMs: 10, now: () => clock.t, onYield: () => yields.push(clock.t) });
    const trace: string[] = [];
    const other = otherClient(trace);
    const settled = await runRequest(budget, 20, 4, clock, trace, true);
    other.stop();
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
    expect(yields).toEqual([12, 24, 36, 48, 60, 72]);
    expect(trace.filter((t) => t !== 'other')).toEqual(Array.from({ length: 20 }, (_, i) => `call ${i + 1}`));
    expect(trace.indexOf('other')).toBeGreaterThan(trace.indexOf('call 3'));
    expect(trace.indexOf('other')).toBeLessThan(trace.indexOf('call 4'));
  });

  it('cuts the request off once the budget is spent: later calls are refused, cutOff says why', async () => {
    const clock = { t: 0 };
    let cutOffs = 0;
    const budget = new ExecutionBudget({ budgetMs: 100, sliceMs: 10, now: () => clock.t, onCutOff: () => cutOffs++ });
    const trace: string[] = [];
    const settled = await runRequest(budget, 30, 4, clock, trace);
    // Call 26 starts at 100 ms used (not more than the budget); call 27 would start at 104 ms.
    expect(trace).toHaveLength(26);
    expect(settled.slice(0, 26).every((s) => s.status === 'fulfilled')).toBe(true);
    const refused = settled.slice(26);
    expect(refused.every((s) => s.status === 'rejected')).toBe(true);
    const err = (refused[0] as PromiseRejectedResult).reason as GraphQLError;
    expect(err.extensions.code).toBe('EXECUTION_BUDGET_EXCEEDED');
    expect(err.message).toMatch(/used 104 ms of CPU time on the event loop, more than its budget of 100 ms \(--execution-budget\)/);
    expect((await budget.cutOff).message).toBe(err.message);
    expect(cutOffs).toBe(1);
    expect(() => budget.check()).toThrow(/--execution-budget/);
  });

  it('does not count time spent waiting for I/O, and renews for the next subscription event', async () => {
    const clock = { t: 0 };
    const budget = new ExecutionBudget({ budgetMs: 100, sliceMs: 10, now: () => clock.t });
    clock.t += 30; // work
    await budget.waiting(
      Promise.resolve().then(() => {
        clock.t += 500; // a version catching up: waiting, not work
      }),
    );
    clock.t += 20;
    expect(budget.used()).toBe(50);
    budget.check();
    clock.t += 60;
    expect(() => budget.check()).toThrow(/more than its budget of 100 ms/);
    budget.renew();
    expect(budget.used()).toBe(0);
    expect(() => budget.check()).not.toThrow();
  });
});
