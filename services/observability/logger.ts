/**
 * Structured logs (pino) on stderr, so that stdout stays free for command output. The level comes
 * from LK_LOG_LEVEL (default `info`; `silent` turns logging off).
 */
import { pino } from 'pino';

export const logger = pino(
  {
    level: process.env.LK_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  pino.destination({ fd: 2, sync: true }),
);

export type Logger = typeof logger;
