/**
 * How `lk speed` and `lk replay` run a speed job until SIGTERM/SIGINT, with an exit bounded in
 * every state the job can be in when the signal comes:
 *
 * - the first signal stops the job at once, also while it is still starting (reading its
 *   version, restoring a savepoint, joining the consumer group): its waits end, and what it had
 *   opened is checkpointed and closed like a running job's;
 * - the stop (a final checkpoint of every owned partition, then leaving the group) has
 *   `--stop-timeout` to finish. Past it the process exits without the final checkpoint, with one
 *   log line saying so: the state stays exact, since a checkpoint counts only once its Kafka
 *   transaction commits, so the last committed checkpoint is the restart point and whatever this
 *   instance processed since is recomputed by the next owner (a transaction left open is aborted
 *   by the next owner's fence or by the broker's transaction timeout). A process that has stopped
 *   its job but does not exit (a client's handle left open) exits at the same deadline;
 * - a second signal exits at once (onShutdownSignal).
 */
import { aborted, onShutdownSignal } from '../../services/config/cliOptions.ts';
import { formatDuration } from '../../services/config/durations.ts';
import { logger } from '../../services/observability/logger.ts';
import type { SpeedJob } from './speedJob.ts';

/** The default of --stop-timeout: a final checkpoint takes well under a second on a healthy cluster. */
export const DEFAULT_STOP_TIMEOUT_MS = 60_000;

/** Exit code of a stop that ran out of time (the final checkpoint was not made). */
export const STOP_TIMEOUT_EXIT_CODE = 1;

/** Runs `job` until the first SIGTERM/SIGINT (then stops it, within `stopTimeoutMs`) or until it fails. */
export async function runUntilSignal(job: SpeedJob, stopTimeoutMs: number): Promise<void> {
  let stopped = false;
  const signal = onShutdownSignal((sig) => {
    logger.info({ signal: sig, stopTimeout: formatDuration(stopTimeoutMs) }, 'stopping: final checkpoint');
    // Unreferenced: it never keeps a process alive that would exit anyway, and fires in one that
    // does not (a wait that never ends, or a handle left open after the stop).
    setTimeout(() => {
      if (stopped) {
        logger.warn(
          { stopTimeout: formatDuration(stopTimeoutMs) },
          'the job stopped after its final checkpoint, but the process did not exit: exiting',
        );
        process.exit(0);
      }
      logger.warn(
        { stopTimeout: formatDuration(stopTimeoutMs), waitingFor: job.stopPhase() },
        'the final checkpoint did not finish within --stop-timeout: exiting without it; each partition resumes from its last committed checkpoint',
      );
      process.exit(STOP_TIMEOUT_EXIT_CODE);
    }, stopTimeoutMs).unref();
  });
  // start() may wait (a group in the middle of a rebalance, a broker away): a signal meanwhile
  // stops the job without waiting for the start to finish first (stop() ends its waits).
  const started = job.start();
  started.catch(() => undefined);
  await Promise.race([started, aborted(signal)]);
  if (!signal.aborted) await Promise.race([aborted(signal), job.failure()]);
  await job.stop();
  stopped = true;
}
