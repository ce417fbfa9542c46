/**
 * The upstream connector: opens TCP (and TLS) connections with Portico's own precise
 * connect timer, records DNS/connect/TLS timings on the socket, and names the cause when
 * a connect fails. It keeps undici's connector signature, so undici clients can use it.
 */
import net from 'node:net'
import type tls from 'node:tls'
import { nodeTls } from '../lib/lazy-builtins.ts'
import type { Duplex } from 'node:stream'
import type { buildConnector } from 'undici'
import { GatewayError } from '../failures/classify.ts'
import type { RequestContext } from '../observe/context.ts'

/** What Portico knows about one upstream connection. */
export interface SocketInfo {
  /** Name resolution time in ms; null for IP literals (no lookup). */
  dnsMs: number | null
  /** TCP handshake time in ms (after DNS). */
  connectMs: number | null
  /** TLS handshake time in ms; null for plain HTTP. */
  tlsMs: number | null
  /** Requests sent on this connection so far; above 1 the connection was reused. */
  requests: number
  /** Remote `address:port` actually connected. */
  remote: string
}

/** Per-socket facts, keyed by the connection's socket. */
export const socketInfo = new WeakMap<Duplex, SocketInfo>()

/** Options of the connector of one endpoint. */
export interface ConnectorOptions {
  /** Connect timeout in ms, DNS included (nginx proxy_connect_timeout). */
  connectTimeoutMs: number
  /** Unix domain socket path: connections go there, whatever host and port undici passes (nginx `http://unix:/path:`). */
  socketPath?: string
  /** TLS options for https:// endpoints. */
  tls?: {
    /** Verify the certificate chain and name. Default true. */
    rejectUnauthorized?: boolean
    /** Extra CA certificates (PEM), added to the system store's defaults. */
    ca?: string | string[]
    /** SNI name; default the endpoint host when it is a name. */
    servername?: string
    cert?: string
    key?: string
  }
}

/**
 * Builds an undici `connect` function.
 *
 * Errors passed to undici are the raw socket errors (classified later by
 * failures/classify.ts) or a {@link GatewayError} of type `connection_timeout` /
 * `dns_timeout` when Portico's connect timer fired first.
 */
export function createConnector(opts: ConnectorOptions): buildConnector.connector {
  return function connect(options, callback) {
    const host = options.hostname
    const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80)
    const start = performance.now()
    // A unix socket has no name to resolve: count it as an address.
    const isIp = net.isIP(host) !== 0 || opts.socketPath !== undefined
    let lookupAt = isIp ? start : -1
    let connectAt = -1
    let done = false
    let socket: net.Socket

    if (options.protocol === 'https:') {
      const t = opts.tls ?? {}
      socket = nodeTls().connect({
        host,
        port,
        servername: t.servername ?? (isIp ? undefined : host),
        rejectUnauthorized: t.rejectUnauthorized ?? true,
        ca: t.ca ? [...nodeTls().rootCertificates, ...(Array.isArray(t.ca) ? t.ca : [t.ca])] : undefined,
        cert: t.cert,
        key: t.key,
        ALPNProtocols: ['http/1.1'],
      })
      socket.setNoDelay(true)
    } else if (opts.socketPath !== undefined) {
      socket = net.connect({ path: opts.socketPath })
    } else {
      socket = net.connect({ host, port, noDelay: true })
    }

    const timer = setTimeout(() => {
      const type = lookupAt < 0 ? 'dns_timeout' : 'connection_timeout'
      const what = lookupAt < 0 ? `resolving ${host}` : opts.socketPath !== undefined ? `connecting to unix:${opts.socketPath}` : `connecting to ${host}:${port}`
      fail(new GatewayError(type, `${what} took longer than ${opts.connectTimeoutMs}ms`))
    }, opts.connectTimeoutMs)

    const fail = (err: Error) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      callback(err, null)
    }
    const succeed = () => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.removeListener('error', fail)
      const now = performance.now()
      socketInfo.set(socket, {
        dnsMs: isIp ? null : lookupAt - start,
        connectMs: (connectAt < 0 ? now : connectAt) - (lookupAt < 0 ? start : lookupAt),
        tlsMs: options.protocol === 'https:' && connectAt >= 0 ? now - connectAt : null,
        requests: 0,
        remote: opts.socketPath !== undefined ? `unix:${opts.socketPath}` : `${socket.remoteAddress}:${socket.remotePort}`,
      })
      callback(null, socket)
    }

    socket.once('error', fail)
    if (!isIp) socket.once('lookup', () => { lookupAt = performance.now() })
    if (options.protocol === 'https:') {
      socket.once('connect', () => { connectAt = performance.now() })
      socket.once('secureConnect', succeed)
    } else {
      socket.once('connect', () => {
        connectAt = performance.now()
        succeed()
      })
    }
  }
}

/**
 * Records that a try was given `socket` (an upstream connection opened by Portico's
 * connector): counts the request on it and, on a new connection, copies its DNS, connect
 * and TLS timings into `ctx`; a reused one has none (null).
 *
 * @returns whether the connection had served earlier requests (keep-alive reuse)
 */
export function recordConnection(ctx: RequestContext, socket: Duplex): boolean {
  const info = socketInfo.get(socket)
  let reused = false
  if (info) {
    info.requests++
    reused = info.requests > 1
    const t = ctx.timings
    t.dns_ms = reused ? null : info.dnsMs
    t.connect_ms = reused ? null : info.connectMs
    t.tls_ms = reused ? null : info.tlsMs
  }
  ctx.connectionReused = reused
  return reused
}
