/**
 * An endpoint: one address of an upstream pool, with its keep-alive connection pool
 * and the counters balancing and the admin API read.
 */
import { readFileSync } from 'node:fs'
import { isIPv6 } from 'node:net'
import type { buildConnector } from 'undici'
import type { CauseType } from '../failures/causes.ts'
import type { UpstreamConfig } from '../config/schema.ts'
import { createConnector, type ConnectorOptions } from './connector.ts'
import { Http1Pool, hostField } from './http1/pool.ts'

/** The state of one endpoint at one instant, as {@link Endpoint.snapshot} returns it (plain JSON). */
export interface EndpointSnapshot {
  /** Endpoint URL as configured. */
  url: string
  /** `host:port`, as in the access log. */
  label: string
  /** The host name the endpoint's address was resolved from, or null for an endpoint connected by its configured host. */
  resolvedFrom: string | null
  weight: number
  /** Whether new requests may go there now: healthy and not ejected. */
  available: boolean
  /** Active health check state; true when no check is configured. */
  healthy: boolean
  /** RFC 9209 type of why the endpoint is down or ejected, or null. */
  downReason: CauseType | null
  /** The same reason in words, or null. */
  downDetail: string | null
  /** Epoch ms when the current ejection ends; 0 when not ejected. */
  ejectedUntil: number
  /** Times ejected since the pool started. */
  ejections: number
  /** Requests in flight now. */
  inFlight: number
  /** Requests sent since the pool started. */
  requests: number
  /** Last gateway failure on real traffic (`at` in epoch ms), or null. */
  lastError: { type: CauseType; at: number; detail: string } | null
}

/** How an endpoint built from one address of a resolved name differs from its configured URL. */
export interface EndpointOptions {
  /** IP address to connect to, resolved from the URL's host name, which stays the TLS server name and the `Host` default. */
  address?: string
  /** TLS options already read from the upstream's `tls` block (so a pool reads its PEM files once); default: read now. */
  tls?: NonNullable<ConnectorOptions['tls']>
}

/** One upstream endpoint. */
export class Endpoint {
  /** Endpoint URL as configured, e.g. `http://127.0.0.1:3000`. */
  readonly url: string
  readonly protocol: 'http:' | 'https:'
  /** Host name or IP literal of the URL (IPv6 without brackets). */
  readonly hostname: string
  /** Where connections go: the address resolved from `hostname`, else `hostname` itself. */
  readonly address: string
  /** The host name `address` was resolved from, or null when connections go to the configured host. */
  readonly resolvedFrom: string | null
  readonly port: number
  /** Unix domain socket path of a `unix:/path` endpoint, else null. */
  readonly socketPath: string | null
  /** `address:port` (`[v6]:port`), or `unix:/path`, as logged in the `endpoint` field. */
  readonly label: string
  /** `hostname:port` from the URL: the `Host` sent when the route does not keep the client's, and the health check's default. */
  readonly authority: string
  /** Relative share of traffic. */
  readonly weight: number
  /** Keep-alive connection pool to this endpoint. */
  readonly dispatcher: Http1Pool
  /** Opens connections to this endpoint (TCP, and TLS with the upstream's `tls` settings); also used for one-off connections. */
  readonly connector: buildConnector.connector
  /** TLS settings of an https:// endpoint (PEMs already read), for the connector and health checks; undefined for http://. */
  readonly tls: ConnectorOptions['tls']
  /** Requests in flight to this endpoint (least_request reads it), pending ones included. */
  inFlight = 0
  /** Requests dispatched but still waiting for a connection. */
  pending = 0
  /** Total requests sent, for the admin API. */
  requests = 0
  /** Last gateway failure seen on real traffic, for the admin API. */
  lastError: { type: CauseType; at: number; detail: string } | null = null
  /** Whether active health checks consider the endpoint up (true until a check says otherwise). */
  healthy = true
  /** Why the endpoint is down or ejected (the RFC 9209 type a request would have got), or null. */
  downReason: CauseType | null = null
  /** Epoch ms until which outlier ejection keeps the endpoint out of rotation; 0 when not ejected. */
  ejectedUntil = 0
  /** The down or ejection reason in words (e.g. `connect ECONNREFUSED 127.0.0.1:3000`, `unexpected status 503`), or null. */
  downDetail: string | null = null
  /** Times outlier detection has ejected the endpoint since the pool started. */
  ejections = 0

  /**
   * @param url endpoint URL (`http://host:port`, `https://host:port` or `unix:/path`)
   * @param weight relative share of traffic
   * @param cfg the upstream's config (timeouts, keep-alive, header size limit, TLS)
   * @param options the resolved address to connect to instead of the URL's host name
   *   (TLS SNI and certificate checks keep the name unless `tls.servername` says otherwise)
   * @throws {Error} naming the file when a `tls` CA bundle or client certificate cannot be read
   */
  constructor(url: string, weight: number, cfg: UpstreamConfig, options: EndpointOptions = {}) {
    // `unix:/path` is plain HTTP over a unix socket; the Host sent is `localhost`, as curl --unix-socket does.
    this.socketPath = url.startsWith('unix:') ? url.slice(5) : null
    const u = new URL(this.socketPath === null ? url : 'http://localhost')
    this.url = url
    this.protocol = u.protocol as 'http:' | 'https:'
    this.hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
    this.port = Number(u.port) || (this.protocol === 'https:' ? 443 : 80)
    this.authority = this.socketPath === null ? `${u.hostname}:${this.port}` : 'localhost'
    this.address = options.address ?? this.hostname
    this.resolvedFrom = options.address === undefined ? null : this.hostname
    const host = options.address === undefined ? u.hostname : isIPv6(options.address) ? `[${options.address}]` : options.address
    this.label = this.socketPath === null ? `${host}:${this.port}` : url
    this.weight = weight
    const tls = this.protocol === 'https:' ? options.tls ?? upstreamTlsOptions(cfg.tls) : undefined
    // An address resolved from a name: SNI and the certificate check use the name, as when connecting by name.
    this.tls = tls && this.resolvedFrom !== null ? { ...tls, servername: tls.servername ?? this.resolvedFrom } : tls
    this.connector = createConnector({ connectTimeoutMs: cfg.timeouts.connect, tls: this.tls, ...(this.socketPath === null ? {} : { socketPath: this.socketPath }) })
    this.dispatcher = new Http1Pool({
      protocol: this.protocol,
      // Connections go to the address; a request without Host names the configured host.
      hostname: this.address,
      port: this.port,
      host: hostField(this.hostname, this.port, this.protocol === 'https:' ? 443 : 80),
      connect: this.connector,
      connections: cfg.limits.max_connections,
      keepAliveTimeoutMs: cfg.keepalive.idle_timeout,
      // A `Keep-Alive: timeout=N` from the upstream wins when shorter, minus this margin.
      keepAliveTimeoutThresholdMs: 1000,
      maxHeaderSize: cfg.max_response_header_size,
    })
  }

  /**
   * Whether the endpoint may receive new requests: healthy and not ejected.
   *
   * @param now epoch ms
   */
  isAvailable(now: number): boolean {
    return this.healthy && this.ejectedUntil <= now
  }

  /**
   * A plain JSON-able view of the endpoint's state, for the admin API.
   *
   * @param now epoch ms, for `available`
   */
  snapshot(now = Date.now()): EndpointSnapshot {
    return {
      url: this.url,
      label: this.label,
      resolvedFrom: this.resolvedFrom,
      weight: this.weight,
      available: this.isAvailable(now),
      healthy: this.healthy,
      downReason: this.downReason,
      downDetail: this.downDetail,
      ejectedUntil: this.ejectedUntil > now ? this.ejectedUntil : 0,
      ejections: this.ejections,
      inFlight: this.inFlight,
      requests: this.requests,
      lastError: this.lastError === null ? null : { ...this.lastError },
    }
  }

  /** Closes idle connections and waits for busy ones to finish. */
  close(): Promise<void> {
    return this.dispatcher.close()
  }

  /** Destroys every connection at once. */
  destroy(): Promise<void> {
    return this.dispatcher.destroy()
  }
}

/**
 * The connector's TLS options from an upstream's `tls` block: PEM files read now (the CA
 * bundle is added to the system CAs by the connector).
 *
 * @throws {Error} naming the file when one cannot be read
 */
export function upstreamTlsOptions(t: UpstreamConfig['tls']): NonNullable<ConnectorOptions['tls']> {
  if (t === undefined) return {}
  const read = (what: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8')
    } catch (err) {
      throw new Error(`cannot read upstream TLS ${what} ${path}: ${(err as Error).message}`, { cause: err })
    }
  }
  return {
    rejectUnauthorized: !t.insecure_skip_verify,
    ca: t.ca === undefined ? undefined : read('CA bundle', t.ca),
    servername: t.servername,
    cert: t.client_certificate === undefined ? undefined : read('client certificate', t.client_certificate.cert),
    key: t.client_certificate === undefined ? undefined : read('client key', t.client_certificate.key),
  }
}
