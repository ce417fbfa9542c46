/**
 * Phase "validate request" (DESIGN §9: parse → [normalise path, validate headers] → route):
 * what must be refused before a request is routed — an HTTP version the listener does not
 * speak, a missing, repeated or malformed Host (or one that disagrees with HTTP/2's
 * `:authority`), a transfer coding other than chunked, a denied method, a path that cannot
 * be normalised — and the normalised target that routing and forwarding use.
 * Also decides which upgrade requests are tunnelled (the rest go as plain requests).
 */
import type { IncomingMessage } from 'node:http'
import type { ListenerConfig } from '../config/schema.ts'
import { REFUSALS, type Refusal } from '../failures/refusals.ts'
import { normalizeTarget, type EncodedSlashes } from '../routing/normalize.ts'
import type { Router } from '../routing/router.ts'
import { clientAddress, type TrustedProxies } from './client-ip.ts'

/** A listener's request rules, compiled once. */
export interface RequestRules {
  /** Methods answered with 405 (`listeners[].deny_methods`); CONNECT is refused regardless. */
  readonly denyMethods: ReadonlySet<string>
  /** `listeners[].encoded_slashes`. */
  readonly encodedSlashes: EncodedSlashes
  /** The `Allow` value of a 405 (RFC 9110 §15.5.6): the common methods not denied. */
  readonly allow: string
}

/** A request refused by the "validate request" phase. */
export interface Refused {
  readonly refusal: Refusal
  /** Short detail for the access log. */
  readonly detail: string
}

/** Methods an `Allow` field of a 405 lists, less the denied ones. */
const COMMON_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']

/**
 * A valid Host value (RFC 9110 §7.2: `uri-host [ ":" port ]`, RFC 3986 §3.2.2): an IP
 * literal in brackets, or a reg-name (unreserved, sub-delims, pct-encoded), then an
 * optional port. Not empty (an http URI has a host, RFC 9110 §4.2.1), no userinfo (`@`),
 * no path, no white space.
 */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::\d{0,5})?$/

/** A request method as nginx accepts one: upper-case letters, `_` and `-` (methods are case-sensitive, RFC 9110 §9.1). */
const METHOD = /^[A-Z][A-Z_-]*$/

/** Where the target as received is kept once `req.url` holds the normalised one. */
const RECEIVED_TARGET = Symbol('portico.receivedTarget')

type Marked = IncomingMessage & { [RECEIVED_TARGET]?: string }

/** Compiles the request rules of a listener. */
export function requestRules(lc: Pick<ListenerConfig, 'deny_methods' | 'encoded_slashes'>): RequestRules {
  const denyMethods = new Set(lc.deny_methods)
  denyMethods.add('CONNECT')
  return { denyMethods, encodedSlashes: lc.encoded_slashes, allow: COMMON_METHODS.filter((m) => !denyMethods.has(m)).join(', ') }
}

/** The request target as the client sent it (for the access log), even after {@link validateRequest} normalised `req.url`. */
export function receivedTarget(req: IncomingMessage): string {
  return (req as Marked)[RECEIVED_TARGET] ?? req.url ?? '/'
}

function refused(name: keyof typeof REFUSALS, detail: string): Refused {
  return { refusal: REFUSALS[name], detail }
}

/**
 * Validates a request before routing and normalises its target. On success `req.url`
 * becomes the normalised target (src/routing/normalize.ts), which routing, the cache key
 * and the upstream request use; {@link receivedTarget} keeps the original. Idempotent.
 *
 * Refuses, in this order: an HTTP version other than 1.0/1.1 on an HTTP/1 connection
 * (505; HTTP/2 arrives over TLS by ALPN, never as a request line); more than one Host field
 * (400, RFC 9112 §3.2); an HTTP/1.1 request without Host, a Host value that is not
 * `host[:port]`, or on HTTP/2 a `host` field naming another authority than `:authority`
 * (400 `invalid_host`, RFC 9112 §3.2, RFC 9113 §8.3.1: routing and the upstream would
 * otherwise read different hosts); `Transfer-Encoding` on an HTTP/1.0 request (400, RFC
 * 9112 §6.1: its framing cannot be trusted); `Transfer-Encoding` other than `chunked` alone
 * (501, RFC 9112 §6.1; nginx does the same); a denied method (405); a target that is
 * neither a path nor, for OPTIONS, `*` (400, RFC 9112 §3.2.4); a path that cannot be
 * normalised (400).
 *
 * @returns null when the request may go on, else the refusal
 */
export function validateRequest(req: IncomingMessage, rules: RequestRules): Refused | null {
  const h2 = (req as { stream?: unknown }).stream !== undefined
  if (!h2 && (req.httpVersionMajor !== 1 || req.httpVersionMinor > 1)) {
    return refused('http_version_not_supported', `request line says HTTP/${req.httpVersion}`)
  }
  const raw = req.rawHeaders
  let hosts = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name.length === 4 && name.toLowerCase() === 'host' && ++hosts > 1) return refused('duplicate_host', 'more than one Host field')
  }
  const host = req.headers.host
  if (host === undefined) {
    if (!h2 && req.httpVersionMinor === 1) return refused('invalid_host', 'an HTTP/1.1 request without a Host field')
  } else if (!HOST_VALUE.test(host)) {
    return refused('invalid_host', `Host ${JSON.stringify(host.slice(0, 64))} is not host[:port]`)
  } else if (h2) {
    const authority = req.headers[':authority']
    if (typeof authority === 'string' && authority !== host && authority.toLowerCase() !== host.toLowerCase()) {
      return refused('invalid_host', `host ${JSON.stringify(host.slice(0, 64))} is not the :authority ${JSON.stringify(authority.slice(0, 64))}`)
    }
  }
  const te = req.headers['transfer-encoding']
  if (te !== undefined) {
    if (!h2 && req.httpVersionMinor === 0) return refused('malformed_request', 'Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)')
    if (te.trim().toLowerCase() !== 'chunked') return refused('transfer_coding_not_implemented', `Transfer-Encoding: ${te.slice(0, 64)}`)
  }
  const method = req.method ?? 'GET'
  // HTTP/1's parser takes only known upper-case methods; HTTP/2 takes any token, and `trace` would pass a deny list of TRACE.
  if (!METHOD.test(method)) return refused('invalid_method', `method ${JSON.stringify(method.slice(0, 32))} is not upper case`)
  if (rules.denyMethods.has(method)) return refused('method_not_allowed', `method ${method} is denied`)
  const target = req.url ?? '/'
  if (target.charCodeAt(0) !== 47 /* / */ && (target !== '*' || method !== 'OPTIONS')) {
    return refused('target_form', target === '*' ? `"*" is a target for OPTIONS only, not ${method} (RFC 9112 §3.2.4)` : 'the request target is not origin-form')
  }
  const normalized = normalizeTarget(target, rules.encodedSlashes)
  if (typeof normalized !== 'string') return refused(normalized.problem, normalized.detail)
  if (normalized !== target) {
    const m = req as Marked
    if (m[RECEIVED_TARGET] === undefined) m[RECEIVED_TARGET] = target
    req.url = normalized
  }
  return null
}

/**
 * Whether an `Upgrade` field names only protocols in `allowed` (case-insensitive, version
 * suffix `/13` ignored) and never `h2c`.
 *
 * @param upgrade the request's Upgrade field value
 * @param allowed the route's `upgrades`
 */
export function upgradeAllowed(upgrade: string | undefined, allowed: readonly string[]): boolean {
  if (!upgrade) return false
  let any = false
  for (const item of upgrade.split(',')) {
    const token = item.trim()
    if (token === '') continue
    const slash = token.indexOf('/')
    const name = (slash < 0 ? token : token.slice(0, slash)).toLowerCase()
    if (name === 'h2c') return false
    let ok = false
    for (const a of allowed) if (a.toLowerCase() === name) ok = true
    if (!ok) return false
    any = true
  }
  return any
}

/**
 * Decides whether an HTTP/1.1 upgrade request is tunnelled (Node's `shouldUpgradeCallback`):
 * a valid HTTP/1.1 GET (RFC 6455 §4.1; RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is
 * ignored) whose route allows every protocol it names. Any other is
 * handled as a plain request, its Upgrade field dropped as hop-by-hop (a server may ignore
 * Upgrade, RFC 9110 §7.8); a request refused by {@link validateRequest} gets its refusal there.
 *
 * @param router the routes in force
 * @param trusted the `trusted_proxies` in force, for routes that match the client address
 */
export function acceptsUpgrade(req: IncomingMessage, rules: RequestRules, router: Router, trusted: TrustedProxies | null = null): boolean {
  if (req.method !== 'GET' || req.httpVersionMinor < 1) return false
  if (validateRequest(req, rules) !== null) return false
  const clientIp = clientAddress(req.socket.remoteAddress ?? '', req.headers, trusted).ip
  const route = router.match(req.headers.host, req.url ?? '/', { method: 'GET', headers: req.headers, clientIp })
  return route !== null && upgradeAllowed(req.headers.upgrade, route.config.upgrades)
}

/**
 * Whether Node's parser saw this plain request as an upgrade it was told to decline. Its
 * response then closes the connection: Node drops bytes a client pipelined after it.
 */
export function declinedUpgrade(req: IncomingMessage): boolean {
  return req.headers.upgrade !== undefined && req.httpVersionMajor === 1 && /\bupgrade\b/i.test(String(req.headers.connection ?? ''))
}
