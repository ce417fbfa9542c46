/**
 * Reader of nginx access.log lines: with the real `log_format` when the configuration
 * is known, else the `combined` layout plus the upstream fields commonly appended to it.
 */
import type { LogEvent } from './event.ts'
import { COMBINED_FORMAT } from '../nginx/model.ts'

/** Fields of one access log line, by variable name without `$` (`status`, `upstream_addr`, ...). */
export type AccessFields = Record<string, string>

/** Parses a line into fields, or returns null when it does not match. */
export type AccessLineParser = (raw: string) => AccessFields | null

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

/**
 * Compiles a `log_format` string into a line parser: literal text must match exactly,
 * each variable captures up to the next literal character (lazily when that character
 * may occur inside values, e.g. spaces in `$upstream_addr` lists).
 *
 * @param format the format string, e.g. `$remote_addr - $remote_user [$time_local] "$request" ...`
 */
export function compileLogFormat(format: string): AccessLineParser {
  const names: string[] = []
  let re = '^'
  const parts = format.split(/(\$\{\w+\}|\$\w+)/)
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]
    if (i % 2 === 0) {
      re += escapeRe(p)
      continue
    }
    names.push(p.replace(/^\$\{?|\}$/g, ''))
    const next = parts[i + 1]?.[0]
    if (next === '"') re += '((?:[^"\\\\]|\\\\.)*)'
    else if (next === ']') re += '([^\\]]*)'
    else if (next === undefined) re += '(.*)'
    else re += '(.*?)'
  }
  const compiled = new RegExp(`${re}$`)
  return (raw) => {
    const m = compiled.exec(raw)
    if (!m) return null
    const fields: AccessFields = {}
    names.forEach((n, i) => { fields[n] = m[i + 1] })
    return fields
  }
}

const parseCombinedPrefix = compileLogFormat(`${COMBINED_FORMAT}$rest`)

/** Common names of the fields appended after `combined` in `key=value` form. */
const KEY_ALIASES: Record<string, string> = {
  rt: 'request_time', request_time: 'request_time',
  urt: 'upstream_response_time', upstream_response_time: 'upstream_response_time',
  uct: 'upstream_connect_time', upstream_connect_time: 'upstream_connect_time',
  uht: 'upstream_header_time', upstream_header_time: 'upstream_header_time',
  ua: 'upstream_addr', upstream_addr: 'upstream_addr', upstream: 'upstream_addr',
  us: 'upstream_status', upstream_status: 'upstream_status',
  request_id: 'request_id', rid: 'request_id', req_id: 'request_id',
}

/**
 * Recognises the usual layouts when the `log_format` is not known: `combined`, then
 * optional fields either as `key=value` (`rt=`, `urt=`, `ua=`, `us=`, `upstream_status=`...)
 * or bare values, classified by shape: `host:port` lists → upstream_addr, three digits
 * → upstream_status, decimals → request_time then upstream_response_time, a hex or UUID
 * token → request_id.
 */
export function parseCommonLayout(raw: string): AccessFields | null {
  const fields = parseCombinedPrefix(raw)
  if (!fields) return null
  const tail = fields.rest ?? ''
  delete fields.rest
  const times: string[] = []
  for (const t of tail.matchAll(/(?:(\w+)=)?("(?:[^"\\]|\\.)*"|\S+)/g)) {
    const value = t[2].replace(/^"|"$/g, '')
    const key = t[1] ? KEY_ALIASES[t[1]] : undefined
    if (key) { fields[key] = value; continue }
    if (t[1]) continue
    if (/^(?:[\w.-]+|\[[0-9a-f:]+\]):\d+(?:(?:, | : )\S+)*$/i.test(value)) fields.upstream_addr ??= value
    else if (/^(?:\d{3}|-)(?:(?:, | : )(?:\d{3}|-))*$/.test(value) && value !== '-') fields.upstream_status ??= value
    else if (/^\d+\.\d{3}$/.test(value)) times.push(value)
    else if (/^[0-9a-f]{32}$|^[0-9a-f-]{36}$/i.test(value)) fields.request_id ??= value
  }
  if (times[0]) fields.request_time ??= times[0]
  if (times[1]) fields.upstream_response_time ??= times[1]
  return fields
}

const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 }

/** `20/Nov/2026:10:15:32 +0100` ($time_local) → Date. */
export function parseTimeLocal(text: string): Date | null {
  const m = /^(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(text)
  if (!m || MONTHS[m[2]] === undefined) return null
  const utc = Date.UTC(Number(m[3]), MONTHS[m[2]], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  const offset = (Number(m[8]) * 60 + Number(m[9])) * 60_000 * (m[7] === '+' ? 1 : -1)
  return new Date(utc - offset)
}

function timeOf(f: AccessFields): Date | null {
  if (f.time_local) return parseTimeLocal(f.time_local)
  if (f.time_iso8601) {
    const d = new Date(f.time_iso8601)
    return Number.isNaN(d.getTime()) ? null : d
  }
  if (f.msec) return new Date(Number(f.msec) * 1000)
  return null
}

/** The last element of an nginx upstream list (`a, b : c` → `c`): the one that answered. */
export function lastOfList(value: string | undefined): string | null {
  if (!value || value === '-') return null
  const last = value.split(/, | : /).pop()?.trim() ?? ''
  return last === '' || last === '-' ? null : last
}

function nonEmpty(value: string | undefined): string | null {
  return value && value !== '-' ? value : null
}

/**
 * Parses one access log line into an event. nginx access logs do not say why a 502/504
 * happened, so `cause` is always null; the error.log of the same minutes does.
 *
 * @param raw the line
 * @param line 1-based line number
 * @param parser a parser from {@link compileLogFormat}; defaults to {@link parseCommonLayout}
 * @returns the event, or null when the line does not match or has no status or time
 */
export function parseNginxAccessLine(raw: string, line: number, parser: AccessLineParser = parseCommonLayout): LogEvent | null {
  const f = parser(raw)
  if (!f) return null
  const ts = timeOf(f)
  const status = Number(f.status)
  if (!ts || Number.isNaN(ts.getTime()) || !Number.isInteger(status) || !f.status) return null
  const upstreamStatus = lastOfList(f.upstream_status)
  return {
    ts, source: 'nginx-access', cause: null, status,
    upstream: nonEmpty(f.proxy_host), endpoint: lastOfList(f.upstream_addr),
    requestId: nonEmpty(f.request_id) ?? nonEmpty(f.http_x_request_id), line, raw,
    detail: upstreamStatus ? `upstream_status=${upstreamStatus}` : null,
    client: nonEmpty(f.remote_addr), request: nonEmpty(f.request), host: nonEmpty(f.host ?? f.http_host),
  }
}
