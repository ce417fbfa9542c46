/**
 * Byte ranges served from a stored complete response (RFC 9110 §14): one satisfiable range
 * of a `Range: bytes=...` request becomes a 206; any other range request (several ranges,
 * other units, no byte of the range in the body) gets the whole response, as a server may
 * ignore `Range` (RFC 9110 §14.2).
 */
import { headerString } from './cache.ts'
import { parseHttpDate } from './fields.ts'
import type { StoredHeaders } from './store.ts'

/** What a `Range` request gets from a stored response of `size` bytes. */
export type RangeAnswer =
  /** The whole response (200): no range, an ignored one, or an `If-Range` that does not match. */
  | { kind: 'full' }
  /** Bytes `start` to `end` inclusive (206 with `Content-Range: bytes start-end/size`). */
  | { kind: 'partial'; start: number; end: number }

/**
 * Evaluates `Range` and `If-Range` against a stored 200 response (RFC 9110 §13.1.5, §14.1.2,
 * §14.2). Only GET carries ranges.
 *
 * @param method the request method
 * @param range the request's `Range` value
 * @param ifRange the request's `If-Range` value
 * @param stored the stored response's fields (for `ETag` and `Last-Modified`)
 * @param size the stored body's length in bytes
 */
export function evaluateRange(method: string, range: string | undefined, ifRange: string | undefined, stored: StoredHeaders, size: number): RangeAnswer {
  if (method !== 'GET' || range === undefined) return { kind: 'full' }
  if (ifRange !== undefined && !ifRangeMatches(ifRange.trim(), stored)) return { kind: 'full' }
  const m = /^bytes=\s*(\d*)-(\d*)\s*$/i.exec(range.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return { kind: 'full' }
  if (m[1] === '') {
    // suffix-range: the last N bytes
    const n = Number(m[2])
    if (n === 0 || size === 0) return { kind: 'full' }
    return { kind: 'partial', start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(m[1])
  const last = m[2] === '' ? size - 1 : Number(m[2])
  if (last < start) return { kind: 'full' }
  if (start >= size) return { kind: 'full' }
  return { kind: 'partial', start, end: Math.min(last, size - 1) }
}

/**
 * `If-Range` (RFC 9110 §13.1.5): an entity-tag must match the stored strong ETag by strong
 * comparison; an HTTP-date must equal the stored Last-Modified exactly.
 */
function ifRangeMatches(ifRange: string, stored: StoredHeaders): boolean {
  if (ifRange.startsWith('"') || ifRange.startsWith('W/')) {
    const etag = headerString(stored.etag)?.trim()
    return etag !== undefined && !ifRange.startsWith('W/') && !etag.startsWith('W/') && etag === ifRange
  }
  const lm = headerString(stored['last-modified'])
  const a = parseHttpDate(ifRange)
  return a !== null && lm !== undefined && parseHttpDate(lm) === a
}

/**
 * The chunks of `body` covering bytes `start` to `end` inclusive.
 *
 * @param body the stored body chunks
 */
export function sliceBody(body: readonly Buffer[], start: number, end: number): Buffer[] {
  const out: Buffer[] = []
  let pos = 0
  for (const chunk of body) {
    const from = Math.max(start - pos, 0)
    const to = Math.min(end + 1 - pos, chunk.length)
    if (from < to) out.push(chunk.subarray(from, to))
    pos += chunk.length
    if (pos > end) break
  }
  return out
}
