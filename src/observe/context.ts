/**
 * The per-request context: everything the lifecycle learns about one request, from
 * which the access log line is rendered alone.
 */
import type { CauseType } from '../failures/causes.ts'

/** Connection timings of the last attempt, in milliseconds; null when not measured (e.g. a reused connection has no connect). */
export interface Timings {
  dns_ms: number | null
  connect_ms: number | null
  tls_ms: number | null
  ttfb_ms: number | null
}

/**
 * How the downstream side ended: `completed` (response fully sent), `client_closed`
 * (the client went away first; logged as 499) or `aborted` (Portico aborted the
 * downstream connection because the upstream failed mid-body).
 */
export type DownstreamOutcome = 'completed' | 'client_closed' | 'aborted'

/** The per-request context; mutable while the request runs, rendered once at the end. */
export class RequestContext {
  /** `performance.now()` at accept of the request, for durations. */
  readonly start: number
  /** Wall clock at start, for the `ts` field. */
  readonly startedAt: number
  requestId: string
  /** The real client address: the socket's, or the one a trusted proxy named (`trusted_proxies`). */
  clientIp: string
  /** The socket's peer address (the hop appended to X-Forwarded-For). */
  peer: string
  /** Whether the peer is a trusted proxy (its X-Forwarded-Proto/Host are passed on). */
  trustedPeer = false
  method: string
  host: string
  path: string
  protocol: string
  /** Status sent downstream (499 when the client went away first). */
  status = 0
  bytesSent = 0
  route: string | null = null
  upstream: string | null = null
  /** `host:port` of the endpoint tried last. */
  endpoint: string | null = null
  upstreamStatus: number | null = null
  attempts = 0
  connectionReused = false
  timings: Timings = { dns_ms: null, connect_ms: null, tls_ms: null, ttfb_ms: null }
  /** The final failure's RFC 9209 type, or null. */
  error: CauseType | null = null
  /** Short human detail of the failure (internal; never sent to clients unless exposed). */
  details: string | null = null
  /** RFC 9211 Cache-Status value, or null when the route does not cache. */
  cache: string | null = null
  downstream: DownstreamOutcome = 'completed'
  /** Whether the access log line was written; the log is written exactly once. */
  logged = false

  constructor(requestId: string, clientIp: string, method: string, host: string, path: string, protocol: string) {
    this.start = performance.now()
    this.startedAt = Date.now()
    this.requestId = requestId
    this.clientIp = clientIp
    this.peer = clientIp
    this.method = method
    this.host = host
    this.path = path
    this.protocol = protocol
  }

  /** Starts a try on the endpoint `label` (`host:port`): counts the attempt and clears the connection facts of the previous try. */
  beginAttempt(label: string): void {
    this.attempts++
    this.endpoint = label
    this.timings.dns_ms = this.timings.connect_ms = this.timings.tls_ms = this.timings.ttfb_ms = null
    this.connectionReused = false
  }
}
