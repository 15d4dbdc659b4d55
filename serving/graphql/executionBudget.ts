/**
 * The event-loop time of one request (or of one subscription event): it runs in slices of
 * `--execution-slice` (wall time: how long the others wait), letting other requests run in between
 * (it yields), and is cut off once it has used `--execution-budget` of CPU time in all (CPU, not
 * wall time: on a machine short of cores a request must not be cut off for the time it waited to
 * be scheduled; the process's CPU time while the request holds the loop, garbage collection
 * included).
 *
 * Why: Node answers every request on one thread. GraphQL executes the root fields of a query
 * (aliases included) one after the other without giving the event loop back: resolvers return
 * promises, but promises resolve as microtasks, which run before any other request's I/O. A query
 * of many costly fields would hold every other client for its whole execution.
 *
 * How: every call of one of serving's resolvers goes through `run()` (serving/graphql/schema.ts).
 * While nothing of the request is pending and its slice is not spent, the call runs at once (a
 * synchronous resolver stays synchronous). Otherwise it queues behind the request's previous
 * calls, each of which must have settled (an async resolver does its work after its first await,
 * so only its settling says its work is done), and before it starts, the request waits for
 * `setImmediate` if its slice is spent: the event loop polls I/O and other requests run. A query
 * of 500 root fields thus runs its calls one after the other with the loop given back between
 * slices, instead of queueing 500 calls into one turn of the loop. The long loops inside a
 * resolver (topKeys, total over every key, reconciliation, versionDiff) are written as steps that
 * pause every 256 keys: `steps()` yields between them too, and their deadline checks cut them off.
 *
 * Only work counts: a request that waits for I/O (a version catching up, a promotion's lock)
 * waits through `waiting()`, which does not count the wait and starts a new slice after it.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as immediate } from 'node:timers/promises';
import type { GraphQLError } from 'graphql/index.js';
import { ErrorCode, requestError } from './errors.ts';

export interface ExecutionBudgetOptions {
  budgetMs: number;
  sliceMs: number;
  /** Counted in /metrics. */
  onYield?: () => void;
  onCutOff?: () => void;
  /** The wall clock of the slices (milliseconds); tests drive one of their own. */
  now?: () => number;
  /** The CPU clock of the budget (milliseconds of the process's CPU time); `now` when a test gives only that. */
  cpuNow?: () => number;
}

/** Milliseconds of CPU time this process has used (user + system). */
export function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export class ExecutionBudget {
  private readonly now: () => number;
  private readonly cpuNow: () => number;
  /** When the current slice started, on the wall clock (yields) and on the CPU clock (the budget). */
  private sliceStart: number;
  private sliceCpuStart: number;
  /** CPU time of the slices that ended. */
  private usedBefore = 0;
  /** Calls started and not settled; the promise that settles after the last of them. */
  private pending = 0;
  private tail: Promise<void> = Promise.resolve();
  private exceeded: GraphQLError | undefined;
  private resolveCutOff!: (err: GraphQLError) => void;
  /** Resolves with the refusal when the budget runs out (the HTTP layer answers with it at once). */
  readonly cutOff = new Promise<GraphQLError>((resolve) => (this.resolveCutOff = resolve));
  yields = 0;

  constructor(private readonly options: ExecutionBudgetOptions) {
    this.now = options.now ?? (() => performance.now());
    this.cpuNow = options.cpuNow ?? options.now ?? processCpuMs;
    this.sliceStart = this.now();
    this.sliceCpuStart = this.cpuNow();
  }

  /** CPU time used so far while this request held the event loop, in milliseconds. */
  used(): number {
    return this.usedBefore + (this.cpuNow() - this.sliceCpuStart);
  }

  /** Ends the current slice (its CPU time counted) and starts the next one now. */
  private endSlice(): void {
    this.usedBefore += this.cpuNow() - this.sliceCpuStart;
  }

  private startSlice(): void {
    this.sliceStart = this.now();
    this.sliceCpuStart = this.cpuNow();
  }

  get cut(): boolean {
    return this.exceeded !== undefined;
  }

  /** Throws the coded refusal once the budget is spent (and resolves `cutOff` the first time). */
  check(): void {
    if (this.exceeded) throw this.exceeded;
    const used = this.used();
    if (used <= this.options.budgetMs) return;
    this.exceeded = requestError(
      ErrorCode.EXECUTION_BUDGET_EXCEEDED,
      `the request used ${Math.round(used)} ms of CPU time on the event loop, more than its budget of ${this.options.budgetMs} ms (--execution-budget), and was cut off; ask for fewer fields, a shorter range or fewer keys`,
      503,
    );
    this.options.onCutOff?.();
    this.resolveCutOff(this.exceeded);
    throw this.exceeded;
  }

  /**
   * Runs a resolver call now when the request has nothing pending and its slice is not spent,
   * else after the request's previous calls have settled and the request has yielded if its slice
   * is spent. Rejects, like check(), once cut off.
   */
  run<T>(call: () => T | Promise<T>): T | Promise<T> {
    if (this.pending === 0) {
      this.check();
      if (this.now() - this.sliceStart < this.options.sliceMs) return this.track(call());
    }
    this.pending++;
    const result = this.tail.then(() => this.turn()).then(call);
    this.tail = result.then(
      () => this.settled(),
      () => this.settled(),
    );
    return result;
  }

  /** An async call's work ends when its promise settles: later calls wait for it. */
  private track<T>(result: T | Promise<T>): T | Promise<T> {
    if (!(result instanceof Promise)) return result;
    this.pending++;
    this.tail = result.then(
      () => this.settled(),
      () => this.settled(),
    );
    return result;
  }

  private settled(): void {
    this.pending--;
  }

  private async turn(): Promise<void> {
    this.check();
    if (this.now() - this.sliceStart < this.options.sliceMs) return;
    await this.yieldNow();
  }

  private async yieldNow(): Promise<void> {
    this.endSlice();
    this.yields++;
    this.options.onYield?.();
    await immediate();
    this.startSlice();
    this.check();
  }

  /**
   * Runs a loop written as steps (serving/queries.ts Steps) to its end, giving the event loop
   * back between slices: the long loops over every key yield too.
   */
  async steps<T>(steps: Generator<void, T, void>): Promise<T> {
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
      if (this.now() - this.sliceStart >= this.options.sliceMs) await this.yieldNow();
    }
  }

  /** Waits for I/O without counting the wait as work: the slice so far is counted, a new one starts after. */
  async waiting<T>(io: Promise<T>): Promise<T> {
    this.endSlice();
    try {
      return await io;
    } finally {
      this.startSlice();
    }
  }

  /** A new budget for the next subscription event (the same subscription, a new piece of work). */
  renew(): void {
    this.usedBefore = 0;
    this.startSlice();
    this.exceeded = undefined;
  }
}
