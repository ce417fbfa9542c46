/**
 * Header rules of the forwarding step: hop-by-hop fields removed (RFC 9110 §7.6.1),
 * Via added (RFC 9110 §7.6.3), X-Forwarded-* and X-Request-Id set.
 */
import type { IncomingHttpHeaders } from 'node:http'

/** Hop-by-hop fields that never cross a proxy (RFC 9110 §7.6.1), plus `expect`: Portico answers 100-continue itself. */
const HOP_BY_HOP = new Set([
  'connection', 'proxy-connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade', 'expect',
  'proxy-authorization', 'proxy-authenticate',
])

/** Fields Portico sets itself on the way upstream; client-sent values are replaced or extended. */
const REPLACED_UPSTREAM = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'via', 'host'])

/** The field names listed in a Connection header, lower-cased (RFC 9110 §7.6.1). */
export function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (!value) return null
  const s = Array.isArray(value) ? value.join(',') : value
  const set = new Set<string>()
  for (const t of s.split(',')) {
    const v = t.trim().toLowerCase()
    if (v && v !== 'close' && v !== 'keep-alive') set.add(v)
  }
  return set.size ? set : null
}

/** What the upstream request carries besides the client's own end-to-end fields. */
export interface ForwardInfo {
  /** Host header to send upstream. */
  host: string
  /** Value for X-Forwarded-Host (the client's Host). */
  forwardedHost: string
  /** `http` or `https`, the scheme the client used. */
  proto: string
  clientIp: string
  requestId: string
  /** Via member, e.g. `1.1 portico`. */
  via: string
}

/**
 * Builds the upstream request's header list (flat `[name, value, ...]`, undici's raw form)
 * from the client's raw headers: hop-by-hop fields, those named in Connection and HTTP/2
 * pseudo-headers dropped;
 * X-Forwarded-For appended to; Via appended to; X-Forwarded-Proto/Host, X-Request-Id
 * and Host set.
 *
 * @param raw the client's `req.rawHeaders`
 * @param connection the client's Connection header value
 */
export function upstreamRequestHeaders(raw: readonly string[], connection: string | string[] | undefined, f: ForwardInfo): string[] {
  const named = connectionTokens(connection)
  const out: string[] = []
  let xff: string | null = null
  let via: string | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    // HTTP/2 pseudo-header fields (`:authority`, `:path`, ...) belong to the client's hop (RFC 9113 §8.3).
    if (name.charCodeAt(0) === 58 /* : */) continue
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || (named !== null && named.has(lower))) continue
    if (REPLACED_UPSTREAM.has(lower)) {
      if (lower === 'x-forwarded-for') xff = xff === null ? raw[i + 1] : `${xff}, ${raw[i + 1]}`
      else if (lower === 'via') via = via === null ? raw[i + 1] : `${via}, ${raw[i + 1]}`
      continue
    }
    out.push(name, raw[i + 1])
  }
  out.push(
    'host', f.host,
    'x-forwarded-for', xff === null ? f.clientIp : `${xff}, ${f.clientIp}`,
    'x-forwarded-proto', f.proto,
    'x-forwarded-host', f.forwardedHost,
    'x-request-id', f.requestId,
    'via', via === null ? f.via : `${via}, ${f.via}`,
  )
  return out
}

/**
 * Makes the downstream response header object from the upstream's: a copy without the
 * hop-by-hop fields and those named in the upstream's Connection. Copying, not deleting,
 * keeps the object in V8's fast (non-dictionary) form for `writeHead`.
 *
 * @param headers the upstream response headers as parsed (lower-case names); not changed
 * @returns a new object
 */
export function cleanResponseHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = connectionTokens(headers.connection)
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name))) continue
    out[name] = headers[name]
  }
  return out
}

/** Request methods that are idempotent (RFC 9110 §9.2.2) and so may be replayed. */
export const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/** Whether an `X-Request-Id` from a client is safe to propagate: 1–200 visible ASCII characters. */
export function isValidRequestId(id: string | undefined): id is string {
  return id !== undefined && id.length > 0 && id.length <= 200 && /^[\x21-\x7e]+$/.test(id)
}
