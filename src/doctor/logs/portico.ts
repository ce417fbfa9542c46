/**
 * Reader of Portico's access log lines: JSON (the contract of DESIGN.md §4) and the
 * text format for humans.
 */
import { CAUSE_TYPES } from '../../failures/causes.ts'
import type { CauseType } from '../../failures/causes.ts'
import type { LogEvent } from './event.ts'

const CAUSE_SET = new Set<string>(CAUSE_TYPES)

function cause(value: unknown): CauseType | null {
  return typeof value === 'string' && CAUSE_SET.has(value) ? (value as CauseType) : null
}

function str(value: unknown): string | null {
  return typeof value === 'string' && value !== '' && value !== '-' ? value : null
}

function date(value: unknown): Date | null {
  if (typeof value !== 'string' && typeof value !== 'number') return null
  const d = new Date(value)
  return Number.isNaN(d.getTime()) ? null : d
}

/**
 * Parses one line of Portico's JSON access log (`ts`, `request_id`, `status`, `error`,
 * `upstream`, `endpoint`, ...). `error` becomes the cause when it is a known RFC 9209
 * type; a 502 relayed from the application has `error: null` and stays uncaused.
 *
 * @param raw the line
 * @param line 1-based line number
 * @returns the event, or null when the line is not a Portico JSON record
 */
export function parsePorticoJsonLine(raw: string, line: number): LogEvent | null {
  if (!raw.startsWith('{')) return null
  let rec: unknown
  try {
    rec = JSON.parse(raw)
  } catch {
    return null
  }
  if (rec === null || typeof rec !== 'object') return null
  const r = rec as Record<string, unknown>
  const ts = date(r.ts)
  if (!ts || !('status' in r) || !('request_id' in r)) return null
  return {
    ts, source: 'portico', cause: cause(r.error),
    status: typeof r.status === 'number' ? r.status : null,
    upstream: str(r.upstream), endpoint: str(r.endpoint), requestId: str(r.request_id),
    line, raw, detail: str(r.details), client: str(r.client_ip),
    request: typeof r.method === 'string' ? `${r.method} ${String(r.path ?? '')}` : null,
  }
}

const TEXT_RE = /^(\d{4}-\d{2}-\d{2}T\S+) (\S+) "([^"]*)" (\d{3}) \d+ \S+ (.*)$/

/**
 * Parses one line of Portico's text access log
 * (`ts client "METHOD host/path proto" status bytes Nms route=… upstream=… endpoint=… … error=… id=…`).
 *
 * @returns the event, or null when the line is not in that format
 */
export function parsePorticoTextLine(raw: string, line: number): LogEvent | null {
  const m = TEXT_RE.exec(raw)
  if (!m) return null
  const ts = date(m[1])
  if (!ts) return null
  const kv = new Map<string, string>()
  for (const p of m[5].matchAll(/(\w+)=("[^"]*"|\S+)/g)) kv.set(p[1], p[2].replace(/^"|"$/g, ''))
  if (!kv.has('id')) return null
  return {
    ts, source: 'portico', cause: cause(kv.get('error')), status: Number(m[4]),
    upstream: str(kv.get('upstream')), endpoint: str(kv.get('endpoint')), requestId: str(kv.get('id')),
    line, raw, detail: str(kv.get('details')), client: m[2], request: m[3],
  }
}
