/**
 * The process log (start-up, reloads, health transitions, warnings): pino JSON lines on
 * standard error, apart from the access log on standard output.
 */
import pino from 'pino'

/** The process logger. Level from `PORTICO_LOG_LEVEL` (default `info`; `silent` in tests). */
export const logger = pino({
  name: 'portico',
  level: process.env.PORTICO_LOG_LEVEL ?? (process.env.NODE_TEST_CONTEXT ? 'silent' : 'info'),
  base: null,
  timestamp: pino.stdTimeFunctions.isoTime,
}, pino.destination({ dest: 2, sync: false }))
