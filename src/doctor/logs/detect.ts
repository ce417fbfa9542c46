/**
 * Log format detection: which reader understands a log, judged on its first lines.
 */
import type { LogEvent } from './event.ts'
import { parsePorticoJsonLine, parsePorticoTextLine } from './portico.ts'
import { parseNginxErrorLine } from './nginx-error.ts'
import { compileLogFormat, parseNginxAccessLine } from './nginx-access.ts'

/** A log format doctor can read. */
export type LogFormatName = 'portico-json' | 'portico-text' | 'nginx-error' | 'nginx-access' | 'unknown'

/** Parses one line of a known format; null when the line does not fit. */
export type LineReader = (raw: string, line: number) => LogEvent | null

/**
 * The line reader of a format.
 *
 * @param format the detected or given format
 * @param logFormat for `nginx-access`, the `log_format` string when known (else common layouts are recognised)
 */
export function lineReader(format: LogFormatName, logFormat?: string): LineReader {
  switch (format) {
    case 'portico-json': return parsePorticoJsonLine
    case 'portico-text': return parsePorticoTextLine
    case 'nginx-error': return parseNginxErrorLine
    case 'nginx-access': {
      const parser = logFormat ? compileLogFormat(logFormat) : undefined
      return (raw, line) => parseNginxAccessLine(raw, line, parser)
    }
    case 'unknown': return () => null
  }
}

const CANDIDATES: readonly Exclude<LogFormatName, 'unknown'>[] = ['portico-json', 'nginx-error', 'portico-text', 'nginx-access']

/**
 * Detects the format of a log from some of its lines (blank lines ignored): the format
 * whose reader understands the most lines wins; `unknown` when none understands any.
 *
 * @param lines the first lines of the log (20 to 50 are plenty)
 * @param logFormat an nginx `log_format` string to try for access logs
 */
export function detectFormat(lines: readonly string[], logFormat?: string): LogFormatName {
  const sample = lines.filter((l) => l.trim() !== '')
  let best: LogFormatName = 'unknown'
  let bestCount = 0
  for (const format of CANDIDATES) {
    const read = lineReader(format, logFormat)
    let count = 0
    sample.forEach((raw, i) => { if (read(raw, i + 1)) count++ })
    if (format === 'nginx-access' && count === 0 && logFormat) {
      const plain = lineReader(format)
      sample.forEach((raw, i) => { if (plain(raw, i + 1)) count++ })
    }
    if (count > bestCount) {
      best = format
      bestCount = count
    }
  }
  return best
}
