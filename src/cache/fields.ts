/**
 * Response header fields as the cache's freshness rules read them. `http-cache-semantics`
 * parses leniently (`Date.parse`, `parseInt`, case-sensitive directive names, one value a
 * field); this module parses by the RFCs and hands it a normalised copy, the policy view.
 * The stored and served fields stay as the origin sent them.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type CachePolicy from 'http-cache-semantics'

/** Day and month names of HTTP-date (RFC 9110 §5.6.7), matched case-insensitively. */
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']
const LONG_DAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday']
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']

const IMF_FIXDATE = /^([a-z]{3}), (\d{2}) ([a-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) gmt$/i
const RFC850_DATE = /^([a-z]{6,9}), (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) gmt$/i
const ASCTIME_DATE = /^([a-z]{3}) ([a-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/i

/**
 * Parses an HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, or the obsolete RFC 850 and asctime
 * forms. Names are matched without regard to case; anything else is invalid.
 *
 * @param value the field value
 * @param now the current time in ms since the epoch, to place a two-digit RFC 850 year
 *   (more than 50 years ahead means the century before)
 * @returns ms since the epoch, or null when the value is not an HTTP-date
 */
export function parseHttpDate(value: string, now = Date.now()): number | null {
  let f: { day: string; date: string; month: string; year: number; time: string[] } | null = null
  let m = IMF_FIXDATE.exec(value)
  if (m !== null) {
    f = { day: m[1], date: m[2], month: m[3], year: Number(m[4]), time: [m[5], m[6], m[7]] }
  } else if ((m = RFC850_DATE.exec(value)) !== null) {
    if (!LONG_DAYS.includes(m[1].toLowerCase())) return null
    const thisYear = new Date(now).getUTCFullYear()
    let year = Math.floor(thisYear / 100) * 100 + Number(m[4])
    if (year > thisYear + 50) year -= 100
    f = { day: m[1].slice(0, 3), date: m[2], month: m[3], year, time: [m[5], m[6], m[7]] }
  } else if ((m = ASCTIME_DATE.exec(value)) !== null) {
    f = { day: m[1], date: m[3].trim(), month: m[2], year: Number(m[7]), time: [m[4], m[5], m[6]] }
  }
  if (f === null || !DAYS.includes(f.day.toLowerCase())) return null
  const mon = MONTHS.indexOf(f.month.toLowerCase())
  const [h, min, s] = f.time.map(Number)
  const d = Number(f.date)
  if (mon < 0 || d < 1 || d > 31 || h > 23 || min > 59 || s > 60) return null
  const ms = Date.UTC(f.year, mon, d, h, min, s)
  // 31 Feb and the like roll over into the next month: not a date.
  return new Date(ms).getUTCDate() === d ? ms : null
}

/** A Cache-Control directive value: true when it has no argument. */
export type DirectiveValue = true | string

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/**
 * Parses Cache-Control (RFC 9111 §5.2): a list of `token [ "=" ( token / quoted-string ) ]`.
 * Names are lower-cased (§5.2: compared case-insensitively); a member that is not of that
 * form is dropped; the first occurrence of a directive wins (§4.2.1).
 *
 * @returns directive name → value (the quoted-string unquoted), in order
 */
export function parseCacheControl(value: string): Map<string, DirectiveValue> {
  const out = new Map<string, DirectiveValue>()
  for (const member of splitList(value)) {
    const eq = member.indexOf('=')
    const name = (eq < 0 ? member : member.slice(0, eq)).toLowerCase()
    if (!TOKEN.test(name) || out.has(name)) continue
    if (eq < 0) {
      out.set(name, true)
      continue
    }
    const raw = member.slice(eq + 1)
    if (TOKEN.test(raw)) out.set(name, raw)
    else if (/^"(?:[^"\\]|\\.)*"$/.test(raw)) out.set(name, raw.slice(1, -1).replace(/\\(.)/g, '$1'))
  }
  return out
}

/** Splits a comma-separated list, keeping commas inside quoted strings; members trimmed, empty ones dropped. */
function splitList(value: string): string[] {
  const out: string[] = []
  let cur = ''
  let quoted = false
  for (let i = 0; i < value.length; i++) {
    const c = value[i]
    if (quoted && c === '\\' && i + 1 < value.length) {
      cur += c + value[++i]
      continue
    }
    if (c === '"') quoted = !quoted
    if (c === ',' && !quoted) {
      out.push(cur)
      cur = ''
    } else {
      cur += c
    }
  }
  out.push(cur)
  return out.map((s) => s.trim()).filter((s) => s !== '')
}

/** A bare item of a Structured Field (RFC 8941 §3.3) as the cache uses it. */
export type BareItem = { type: 'integer' | 'decimal'; value: number } | { type: 'string' | 'token'; value: string } | { type: 'boolean'; value: boolean } | { type: 'other' }

/**
 * Parses a Dictionary Structured Field (RFC 8941 §4.2.2), the syntax of targeted
 * cache-control fields (RFC 9213 §2.1). Parameters are parsed and dropped.
 *
 * @returns member name → bare item, or null on any parsing error
 */
export function parseDictionary(input: string): Map<string, BareItem> | null {
  const p = { s: input, i: 0 }
  const out = new Map<string, BareItem>()
  while (p.s[p.i] === ' ') p.i++
  if (p.i >= p.s.length) return out
  for (;;) {
    const key = parseKey(p)
    if (key === null) return null
    let item: BareItem = { type: 'boolean', value: true }
    if (p.s[p.i] === '=') {
      p.i++
      if (p.s[p.i] === '(') {
        if (!skipInnerList(p)) return null
        item = { type: 'other' }
      } else {
        const bare = parseBareItem(p)
        if (bare === null) return null
        item = bare
      }
    }
    if (!skipParameters(p)) return null
    out.set(key, item)
    while (p.s[p.i] === ' ' || p.s[p.i] === '\t') p.i++
    if (p.i >= p.s.length) return out
    if (p.s[p.i] !== ',') return null
    p.i++
    while (p.s[p.i] === ' ' || p.s[p.i] === '\t') p.i++
    if (p.i >= p.s.length) return null
  }
}

interface Cursor { s: string; i: number }

function parseKey(p: Cursor): string | null {
  const m = /^[a-z*][a-z0-9_.*-]*/.exec(p.s.slice(p.i))
  if (m === null) return null
  p.i += m[0].length
  return m[0]
}

function parseBareItem(p: Cursor): BareItem | null {
  const rest = p.s.slice(p.i)
  let m: RegExpExecArray | null
  if ((m = /^-?\d{1,15}(\.\d{1,3})?/.exec(rest)) !== null) {
    if (m[1] !== undefined && m[0].replace(/^-/, '').split('.')[0].length > 12) return null
    p.i += m[0].length
    return { type: m[1] === undefined ? 'integer' : 'decimal', value: Number(m[0]) }
  }
  if ((m = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"/.exec(rest)) !== null) {
    p.i += m[0].length
    return { type: 'string', value: m[1].replace(/\\(.)/g, '$1') }
  }
  if ((m = /^[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*/.exec(rest)) !== null) {
    p.i += m[0].length
    return { type: 'token', value: m[0] }
  }
  if ((m = /^\?[01]/.exec(rest)) !== null) {
    p.i += 2
    return { type: 'boolean', value: m[0] === '?1' }
  }
  if ((m = /^:[A-Za-z0-9+/=]*:/.exec(rest)) !== null) {
    p.i += m[0].length
    return { type: 'other' }
  }
  return null
}

function skipParameters(p: Cursor): boolean {
  while (p.s[p.i] === ';') {
    p.i++
    while (p.s[p.i] === ' ') p.i++
    if (parseKey(p) === null) return false
    if (p.s[p.i] === '=') {
      p.i++
      if (parseBareItem(p) === null) return false
    }
  }
  return true
}

function skipInnerList(p: Cursor): boolean {
  p.i++
  for (;;) {
    while (p.s[p.i] === ' ') p.i++
    if (p.s[p.i] === ')') {
      p.i++
      return true
    }
    if (p.i >= p.s.length || parseBareItem(p) === null || !skipParameters(p)) return false
    if (p.s[p.i] !== ' ' && p.s[p.i] !== ')') return false
  }
}

/** Directives whose argument is a number of seconds (RFC 9111 §5.2.2, RFC 5861). */
const SECONDS_DIRECTIVES = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error'])

/**
 * The Cache-Control directives of a targeted field (RFC 9213 §2.1), or null when the field
 * is empty or does not parse as a Dictionary, in which case the cache ignores it. A
 * directive whose value has the wrong type (a non-integer `max-age`) is dropped.
 */
export function targetedDirectives(value: string): Map<string, DirectiveValue> | null {
  const dict = parseDictionary(value)
  if (dict === null || dict.size === 0) return null
  const out = new Map<string, DirectiveValue>()
  for (const [name, item] of dict) {
    if (SECONDS_DIRECTIVES.has(name)) {
      if (item.type === 'integer' && item.value >= 0) out.set(name, String(item.value))
      continue
    }
    if (item.type === 'boolean') {
      if (item.value) out.set(name, true)
    } else if (item.type === 'string' || item.type === 'token') {
      out.set(name, item.value)
    } else if (item.type === 'integer' || item.type === 'decimal') {
      out.set(name, String(item.value))
    }
  }
  return out
}

/** The targeted fields Portico obeys, most precedent first (RFC 9213 §2.1, §3). */
export const TARGETED_FIELDS: readonly string[] = ['cdn-cache-control']

/**
 * Final status codes defined by RFC 9110 §15 whose caching semantics Portico implements
 * (`must-understand`, RFC 9111 §5.2.2.3). 206 is left out: partial responses are not stored.
 */
const UNDERSTOOD_STATUSES = new Set([200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 304, 307, 308,
  400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426,
  500, 501, 502, 503, 504, 505])

/** Statuses `http-cache-semantics` stores at all; others are presented to it as 200 when they may be stored. */
const LIBRARY_STATUSES = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501])

/** Response status and fields in the shape `http-cache-semantics` reads. */
export interface PolicyResponse {
  status: number
  headers: CachePolicy.Headers
}

/** One string for a field that may have arrived on several lines (RFC 9110 §5.3). */
function joined(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}

/** Formats directives as one Cache-Control value that `http-cache-semantics` splits correctly. */
function formatDirectives(cc: Map<string, DirectiveValue>): string {
  const parts: string[] = []
  for (const [name, v] of cc) {
    // Field-valued no-cache and private (§5.2.2.4, §5.2.2.7): a shared cache may treat them as unqualified.
    if (v === true || name === 'no-cache' || name === 'private') parts.push(name)
    else parts.push(`${name}=${v.replace(/[",\s]/g, '')}`)
  }
  return parts.join(', ')
}

/**
 * The policy view of a response: what `http-cache-semantics` gets in place of the raw
 * fields, so that its storability (RFC 9111 §3), freshness (§4.2) and validation rules see
 * the fields as the RFCs define them:
 * - the first targeted field with a valid, non-empty value (`CDN-Cache-Control`) replaces
 *   Cache-Control, and Expires is ignored (RFC 9213 §2.1);
 * - Cache-Control directive names lower-cased, malformed members dropped, the first
 *   occurrence of a directive kept, lines joined (RFC 9111 §4.2.1, §5.2);
 * - `must-understand` (§5.2.2.3): `no-store` is dropped for an understood status, and the
 *   response is not stored otherwise;
 * - Expires that is not an HTTP-date means already expired (§5.3); Date and Last-Modified
 *   that are not HTTP-dates are ignored; both are rewritten as IMF-fixdate;
 * - Age: the first value; one that is not a non-negative integer is ignored (§5.1), one
 *   over 2^31 is 2^31 (§1.2.2);
 * - Pragma is ignored (§5.4, deprecated), and so is Set-Cookie, which the library would
 *   otherwise never serve from a shared cache (a response with it may be stored, §7.3);
 * - a final status the library does not know (400, 500, 599, ...) is presented as 200 when
 *   the response has explicit freshness or `public` (§3, §4.2.2), so it may be stored.
 *
 * @param status the response status
 * @param headers the response fields, lower-case names, as undici gives them
 */
export function policyResponse(status: number, headers: IncomingHttpHeaders | Record<string, string | string[]>): PolicyResponse {
  const out: CachePolicy.Headers = {}
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || k === 'set-cookie' || k === 'pragma') continue
    out[k] = joined(v) as string
  }
  let cc: Map<string, DirectiveValue> | null = null
  for (const name of TARGETED_FIELDS) {
    const v = joined(headers[name])
    if (v !== undefined) cc = targetedDirectives(v)
    if (cc !== null) {
      delete out.expires
      break
    }
  }
  cc ??= parseCacheControl(out['cache-control'] as string | undefined ?? '')
  if (cc.has('must-understand')) {
    if (UNDERSTOOD_STATUSES.has(status)) cc.delete('no-store')
    else cc.set('no-store', true)
  }
  if (cc.size > 0) out['cache-control'] = formatDirectives(cc)
  else delete out['cache-control']

  const expires = out.expires as string | undefined
  if (expires !== undefined) {
    const t = parseHttpDate(expires)
    out.expires = new Date(t ?? 0).toUTCString()
  }
  for (const name of ['date', 'last-modified']) {
    const v = out[name] as string | undefined
    if (v === undefined) continue
    const t = parseHttpDate(v)
    if (t === null) delete out[name]
    else out[name] = new Date(t).toUTCString()
  }
  // Several Age values: the first counts. Parameters after it (`7200;foo=bar`) are ignored.
  const age = /^\s*(\d+)\s*(?:[;,]|$)/.exec(joined(headers.age) ?? '')
  if (age === null) delete out.age
  else out.age = age[1].length > 10 || Number(age[1]) > 2 ** 31 ? String(2 ** 31) : String(Number(age[1]))

  let presented = status
  if (!LIBRARY_STATUSES.has(status) && status >= 200 && status !== 206 && status !== 304) {
    const explicit = cc.has('max-age') || cc.has('s-maxage') || cc.has('public') || out.expires !== undefined
    if (explicit && !(cc.has('must-understand') && !UNDERSTOOD_STATUSES.has(status))) presented = 200
  }
  return { status: presented, headers: out }
}

/**
 * The policy view of a request's fields: Cache-Control normalised as for responses
 * (directive names compared case-insensitively, RFC 9111 §5.2), Pragma ignored (§5.4).
 */
export function policyRequestHeaders(headers: IncomingHttpHeaders): CachePolicy.Headers {
  const out: CachePolicy.Headers = { ...headers }
  delete out.pragma
  const cc = joined(headers['cache-control'])
  if (cc !== undefined) {
    const parsed = parseCacheControl(cc)
    if (parsed.size > 0) out['cache-control'] = formatDirectives(parsed)
    else delete out['cache-control']
  }
  return out
}
