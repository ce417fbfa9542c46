/**
 * The process log (start-up, reloads, health transitions, warnings): pino JSON lines on
 * standard error, apart from the access log on standard output. The demo switches it to
 * text lines for people reading a terminal.
 */
import pino from 'pino'

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }

/** Options of {@link useTextProcessLog}. */
export interface TextLogOptions {
  /** Records for which this returns true are not written (e.g. a warning the caller explains itself). */
  hide?: (record: Record<string, unknown>) => boolean
  /** Keep lines back until the returned function is called (so a guide can be printed first). */
  hold?: boolean
}

const json = pino.destination({ dest: 2, sync: false })
let text: { hide: TextLogOptions['hide']; held: string[] | null } | null = null

/** pino's stream: JSON lines as they are, or rendered as text when text mode is on. */
const sink = {
  write(line: string): boolean {
    if (text === null) return json.write(line)
    let rec: Record<string, unknown>
    try {
      rec = JSON.parse(line) as Record<string, unknown>
    } catch {
      return json.write(line)
    }
    if (text.hide?.(rec)) return true
    const rendered = formatLogLine(rec)
    if (text.held !== null) text.held.push(rendered)
    else json.write(rendered)
    return true
  },
  flush(cb: (err?: Error) => void): void {
    json.flush(cb)
  },
}

/** The process logger. Level from `PORTICO_LOG_LEVEL` (default `info`; `silent` in tests). */
export const logger = pino({
  name: 'portico',
  level: process.env.PORTICO_LOG_LEVEL ?? (process.env.NODE_TEST_CONTEXT ? 'silent' : 'info'),
  base: null,
  timestamp: pino.stdTimeFunctions.isoTime,
}, sink)

/**
 * Renders a process log record as one text line: `2026-12-05T12:09:32.313Z WARN message key=value ...`
 * (fields other than time, level, name and msg follow as key=value, objects as JSON).
 */
export function formatLogLine(rec: Record<string, unknown>): string {
  const parts = [String(rec.time ?? ''), LEVELS[Number(rec.level)] ?? String(rec.level), String(rec.msg ?? '')]
  for (const [k, v] of Object.entries(rec)) {
    if (k === 'time' || k === 'level' || k === 'msg' || k === 'name' || v === undefined) continue
    parts.push(`${k}=${typeof v === 'string' ? (/[\s"]/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
  }
  return `${parts.join(' ')}\n`
}

/**
 * Switches the process log to text lines (for the demo, read by people in a terminal).
 *
 * @returns a function that writes the lines held back (with `hold`) and stops holding
 */
export function useTextProcessLog(opts: TextLogOptions = {}): () => void {
  text = { hide: opts.hide, held: opts.hold ? [] : null }
  return () => {
    if (text === null || text.held === null) return
    const held = text.held
    text.held = null
    for (const l of held) json.write(l)
  }
}
