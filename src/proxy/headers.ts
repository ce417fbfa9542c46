/**
 * Header rules of the forwarding step: hop-by-hop fields removed (RFC 9110 §7.6.1),
 * Via added (RFC 9110 §7.6.3), X-Forwarded-*, X-Real-IP and X-Request-Id set, client-sent
 * address fields dropped unless the route passes them, the upstream's Server hidden,
 * 103 Early Hints relayed only when valid and to HTTP/1.1 or later clients.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'

/** Hop-by-hop fields that never cross a proxy (RFC 9110 §7.6.1), plus `expect`: Portico answers 100-continue itself. */
const HOP_BY_HOP = new Set([
  'connection', 'proxy-connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade', 'expect',
  'proxy-authorization', 'proxy-authenticate',
])

/** Fields Portico sets itself on the way upstream; client-sent values are replaced or extended. */
const REPLACED_UPSTREAM = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'via', 'host'])

/**
 * Client-address fields an application may believe (`X-Real-IP`, Akamai's and Cloudflare's
 * `True-Client-IP`, RFC 7239 `Forwarded`): any client can write them, so they are dropped
 * unless the route's `forwarded_headers` is `pass`.
 */
const CLIENT_ADDRESS_FIELDS = new Set(['x-real-ip', 'true-client-ip', 'forwarded'])

/**
 * Whether a field name with `_` is one of the fields Portico sets, strips or frames with
 * once `_` is read as `-`: CGI-style servers (FastCGI, WSGI, Rack) map both to one
 * variable (`HTTP_X_REAL_IP`), so `X_Real_IP: 6.6.6.6` would pass for the `X-Real-IP`
 * Portico sets. nginx drops every name with `_` (`underscores_in_headers off`); Portico
 * drops these and keeps the others.
 *
 * @param lower a lower-cased field name containing `_`
 */
function spoofsManagedField(lower: string): boolean {
  const dashed = lower.replaceAll('_', '-')
  return HOP_BY_HOP.has(dashed) || REPLACED_UPSTREAM.has(dashed) || CLIENT_ADDRESS_FIELDS.has(dashed) || dashed === 'content-length'
}

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
  /** The real client address (X-Real-IP). */
  clientIp: string
  /** The socket's peer address, appended to X-Forwarded-For (default `clientIp`). */
  peerIp?: string
  /**
   * Whether the peer is a trusted proxy (`trusted_proxies`): its X-Forwarded-Proto,
   * X-Forwarded-Host, X-Real-IP, True-Client-IP and Forwarded are passed on, not replaced.
   */
  trustedPeer?: boolean
  /** Add an RFC 7239 `Forwarded` element (the route's `forwarded`). */
  forwarded?: boolean
  requestId: string
  /** Via member, e.g. `1.1 portico`. */
  via: string
  /**
   * The route's `forwarded_headers`: `strip` (default) drops client-sent X-Real-IP,
   * True-Client-IP and Forwarded; `pass` keeps them. X-Real-IP is set to `clientIp`
   * unless a passed one is present.
   */
  clientHeaders?: 'strip' | 'pass'
}

/**
 * Builds the upstream request's header list (flat `[name, value, ...]`, undici's raw form)
 * from the client's raw headers: hop-by-hop fields, those named in Connection, HTTP/2
 * pseudo-headers and `_` spellings of the fields Portico manages (`X_Real_IP`) dropped;
 * X-Forwarded-For appended to with the peer's address; Via appended to; X-Request-Id and
 * Host set; X-Forwarded-Proto/Host set unless a trusted peer sent them; X-Real-IP,
 * True-Client-IP and Forwarded kept only when `f.clientHeaders` is `pass` or the peer is
 * trusted; this hop's `Forwarded` element added when `f.forwarded`.
 *
 * @param raw the client's `req.rawHeaders`
 * @param connection the client's Connection header value
 */
export function upstreamRequestHeaders(raw: readonly string[], connection: string | string[] | undefined, f: ForwardInfo): string[] {
  const named = connectionTokens(connection)
  const out: string[] = []
  let xff: string | null = null
  let via: string | null = null
  let xfProto: string | null = null
  let xfHost: string | null = null
  let fwd: string | null = null
  const trusted = f.trustedPeer === true
  const pass = f.clientHeaders === 'pass' || trusted
  let realIp = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    // HTTP/2 pseudo-header fields (`:authority`, `:path`, ...) belong to the client's hop (RFC 9113 §8.3).
    if (name.charCodeAt(0) === 58 /* : */) continue
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || (named !== null && named.has(lower))) continue
    if (lower.indexOf('_') >= 0 && spoofsManagedField(lower)) continue
    if (REPLACED_UPSTREAM.has(lower)) {
      if (lower === 'x-forwarded-for') xff = xff === null ? raw[i + 1] : `${xff}, ${raw[i + 1]}`
      else if (lower === 'via') via = via === null ? raw[i + 1] : `${via}, ${raw[i + 1]}`
      else if (trusted && lower === 'x-forwarded-proto') xfProto ??= raw[i + 1]
      else if (trusted && lower === 'x-forwarded-host') xfHost ??= raw[i + 1]
      continue
    }
    if (CLIENT_ADDRESS_FIELDS.has(lower)) {
      if (!pass) continue
      if (lower === 'x-real-ip') realIp = true
      else if (lower === 'forwarded' && f.forwarded) {
        // Replaced below by the received elements (from a trusted peer) and this hop's.
        if (trusted) fwd = fwd === null ? raw[i + 1] : `${fwd}, ${raw[i + 1]}`
        continue
      }
    }
    out.push(name, raw[i + 1])
  }
  if (!realIp) out.push('x-real-ip', f.clientIp)
  const peer = f.peerIp ?? f.clientIp
  if (f.forwarded) {
    const element = forwardedElement(peer, f.forwardedHost, f.proto)
    out.push('forwarded', fwd === null ? element : `${fwd}, ${element}`)
  }
  out.push(
    'host', f.host,
    'x-forwarded-for', xff === null ? peer : `${xff}, ${peer}`,
    'x-forwarded-proto', xfProto ?? f.proto,
    'x-forwarded-host', xfHost ?? f.forwardedHost,
    'x-request-id', f.requestId,
    'via', via === null ? f.via : `${via}, ${f.via}`,
  )
  return out
}

/** This hop's RFC 7239 `Forwarded` element: `for` (IPv6 in brackets, quoted), `host` and `proto` (§4, §6). */
export function forwardedElement(peer: string, host: string, proto: string): string {
  const node = peer.includes(':') ? `"[${peer}]"` : peer
  const h = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(host) ? host : JSON.stringify(host)
  return host ? `for=${node};host=${h};proto=${proto}` : `for=${node};proto=${proto}`
}

/**
 * Makes the downstream response header object from the upstream's: a copy without the
 * hop-by-hop fields, those named in the upstream's Connection, and `Server` unless
 * `passServer` (backend masking; nginx hides it unless `proxy_pass_header Server`).
 * Copying, not deleting, keeps the object in V8's fast (non-dictionary) form for `writeHead`.
 *
 * @param headers the upstream response headers as parsed (lower-case names); not changed
 * @param passServer keep the upstream's `Server` (the route's `pass_server_header`)
 * @returns a new object
 */
export function cleanResponseHeaders(headers: IncomingHttpHeaders, passServer = false): IncomingHttpHeaders {
  const named = connectionTokens(headers.connection)
  const out: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name))) continue
    if (name === 'server' && !passServer) continue
    out[name] = headers[name]
  }
  return out
}

/** Request methods that are idempotent (RFC 9110 §9.2.2) and so may be replayed. */
export const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/** The shape of a client's `X-Request-Id` that is propagated: a token safe in logs, headers and HTML. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * Whether an `X-Request-Id` from a client is safe to propagate: 1–128 characters of
 * `A–Z a–z 0–9 . _ : -` (UUIDs, ULIDs, W3C trace IDs, `req-42`). Anything else (quotes,
 * spaces, `<`, `;`, very long values) is replaced by a new ID, so a client cannot inject
 * into logs, the error page or other systems that trust the ID.
 */
export function isValidRequestId(id: string | string[] | undefined): id is string {
  return typeof id === 'string' && REQUEST_ID.test(id)
}

/**
 * Relays an upstream's 103 Early Hints (RFC 8297) downstream: its `Link` only, only when
 * the final response has not started, never to an HTTP/1.0 client (RFC 9110 §15.2: no 1xx
 * to HTTP/1.0), and dropped when Node finds the `Link` invalid. An interim response is a
 * hint: it never fails the request.
 */
export function forwardEarlyHints(req: IncomingMessage, res: ServerResponse, headers: IncomingHttpHeaders): void {
  const link = headers.link
  if (!link || res.headersSent || (req.httpVersionMajor === 1 && req.httpVersionMinor === 0)) return
  try {
    res.writeEarlyHints({ link })
  } catch {
    // An invalid Link (ERR_INVALID_ARG_VALUE): the hint is dropped, the request goes on.
  }
}
