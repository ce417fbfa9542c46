/**
 * TLS termination of HTTPS listeners: certificates read from PEM files, chosen by SNI
 * (exact and wildcard names), HTTP/2 and HTTP/1.1 offered by ALPN, certificates swapped
 * on reload without dropping connections; and the plain listener that redirects to HTTPS.
 */
import { readFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import { X509Certificate } from 'node:crypto'
import tls from 'node:tls'
import type { ListenerConfig } from '../config/schema.ts'

/** The `tls` block of a listener, with defaults applied. */
export type ListenerTlsConfig = NonNullable<ListenerConfig['tls']>

/** One certificate loaded from disk: its secure context and the host names it serves. */
export interface LoadedCertificate {
  /** Path of the certificate PEM, for messages. */
  certPath: string
  /** Lower-cased DNS names from subjectAltName, or the subject CN when there is no DNS SAN (RFC 6125 §6.4.4); may start with `*.`. */
  names: string[]
  /** The PEM certificate chain and key, as read. */
  pem: { cert: string; key: string }
  context: tls.SecureContext
}

/**
 * The host names a certificate serves: its subjectAltName DNS entries, or its subject CN
 * when it has none (RFC 6125 §6.4.4), lower-cased.
 *
 * @param pem a PEM certificate (the first of a chain is used)
 */
export function certificateNames(pem: string): string[] {
  const x509 = new X509Certificate(pem)
  const sans = (x509.subjectAltName ?? '').split(/,\s*/).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4).toLowerCase())
  if (sans.length > 0) return sans
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)
  return cn ? [cn[1].toLowerCase()] : []
}

/**
 * Whether `servername` is served by `name`: equal ignoring case, or `name` is `*.suffix`
 * and `servername` is exactly one label followed by `.suffix` (RFC 6125 §6.4.3).
 */
export function nameMatches(name: string, servername: string): boolean {
  const host = servername.toLowerCase()
  if (!name.startsWith('*.')) return name === host
  const dot = host.indexOf('.')
  return dot > 0 && host.slice(dot + 1) === name.slice(2)
}

/** Secure-context options every certificate of a listener shares (nginx `ssl_protocols`). */
function contextOptions(cfg: ListenerTlsConfig): tls.SecureContextOptions {
  return { minVersion: cfg.min_version }
}

/**
 * Reads the certificates of a listener from disk and builds their secure contexts.
 *
 * @throws {Error} naming the file when a PEM cannot be read or the key does not match the certificate
 */
export function loadCertificates(cfg: ListenerTlsConfig): LoadedCertificate[] {
  return cfg.certificates.map((c) => {
    let pem: { cert: string; key: string }
    try {
      pem = { cert: readFileSync(c.cert, 'utf8'), key: readFileSync(c.key, 'utf8') }
    } catch (err) {
      throw new Error(`cannot read TLS certificate or key: ${(err as Error).message}`, { cause: err })
    }
    try {
      return { certPath: c.cert, names: certificateNames(pem.cert), pem, context: tls.createSecureContext({ ...pem, ...contextOptions(cfg) }) }
    } catch (err) {
      throw new Error(`invalid TLS certificate ${c.cert} or key ${c.key}: ${(err as Error).message}`, { cause: err })
    }
  })
}

/**
 * The certificates of one HTTPS listener, chosen per connection by SNI (nginx picks a
 * `server` block by `server_name`; here the names come from the certificates). The
 * first certificate is the default: for clients without SNI and for names no
 * certificate serves.
 */
export class CertificateStore {
  #certs: LoadedCertificate[]

  /** @param certs at least one loaded certificate; the first is the default */
  constructor(certs: LoadedCertificate[]) {
    this.#certs = certs
  }

  /** The default certificate. */
  get default(): LoadedCertificate {
    return this.#certs[0]
  }

  /** The certificate for `servername`: an exact name first, then a wildcard, else the default. */
  select(servername: string): LoadedCertificate {
    const host = servername.toLowerCase()
    return this.#certs.find((c) => c.names.includes(host))
      ?? this.#certs.find((c) => c.names.some((n) => n.startsWith('*.') && nameMatches(n, host)))
      ?? this.#certs[0]
  }

  /** Replaces the certificates; connections already established keep theirs. */
  replace(certs: LoadedCertificate[]): void {
    this.#certs = certs
  }

  /** `SNICallback` for `tls.createServer` and `http2.createSecureServer`. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    cb(null, this.select(servername).context)
  }
}

/** A server that terminates TLS for one listener. */
export type SecureServer = http2.Http2SecureServer | https.Server

/** Server options of the plain-HTTP side shared by every listener. */
export type Http1Options = Pick<http.ServerOptions, 'maxHeaderSize' | 'headersTimeout' | 'requestTimeout' | 'keepAliveTimeout' | 'connectionsCheckingInterval' | 'noDelay' | 'ServerResponse'>

/**
 * Creates the server of an HTTPS listener. With `h2` in `alpn` it is
 * `http2.createSecureServer` (RFC 9113 over TLS, ALPN `h2`), accepting HTTP/1.1 too when
 * `alpn` lists `http/1.1`; both reach `handler` (HTTP/2 through the compatibility API).
 * Without `h2` it is an HTTPS/1.1 server.
 *
 * @param cfg the listener's `tls` block
 * @param store the listener's certificates (the SNI callback reads it on each handshake)
 * @param http1 HTTP/1.1 limits and timeouts of the listener
 * @param maxHeaderListSize largest HTTP/2 header list accepted, in bytes (RFC 9113 §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE)
 * @param idleTimeoutMs how long an HTTP/2 session with no open stream stays open before GOAWAY, in ms (nginx `keepalive_timeout`, as for HTTP/1.1 keep-alive)
 */
export function createSecureServer(cfg: ListenerTlsConfig, store: CertificateStore, http1: Http1Options, maxHeaderListSize: number, idleTimeoutMs: number, handler: http.RequestListener): SecureServer {
  const secure = { ...store.default.pem, ...contextOptions(cfg), SNICallback: store.sniCallback }
  if (!cfg.alpn.includes('h2')) return https.createServer({ ...http1, ...secure, ALPNProtocols: ['http/1.1'] }, handler)
  const server = http2.createSecureServer({
    ...http1,
    ...secure,
    allowHTTP1: cfg.alpn.includes('http/1.1'),
    Http1ServerResponse: http1.ServerResponse,
    settings: { maxHeaderListSize },
    maxSessionInvalidFrames: 1000,
  }, withHostFromAuthority(handler) as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void)
  server.on('session', (session) => closeWhenIdle(session, idleTimeoutMs))
  return server
}

/**
 * Closes (GOAWAY, RFC 9113 §6.8) an HTTP/2 session that had no open stream for
 * `idleMs`. A stream that is merely slow keeps its session: the upstream timeouts bound it.
 */
function closeWhenIdle(session: http2.ServerHttp2Session, idleMs: number): void {
  let open = 0
  let timer: NodeJS.Timeout | null = null
  const arm = (): void => {
    timer = setTimeout(() => { if (!session.closed && !session.destroyed) session.close() }, idleMs)
    timer.unref()
  }
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    open++
    if (timer !== null) clearTimeout(timer)
    timer = null
    stream.once('close', () => {
      if (--open === 0) arm()
    })
  })
  session.once('close', () => { if (timer !== null) clearTimeout(timer) })
  arm()
}

/**
 * Gives HTTP/2 requests a `host` header from `:authority` (RFC 9113 §8.3.1: a client
 * sends one or the other; an intermediary makes a Host for HTTP/1.1 from `:authority`),
 * so routing, logs and the upstream request read one field for both versions.
 */
function withHostFromAuthority(handler: http.RequestListener): http.RequestListener {
  return (req, res) => {
    if (req.httpVersionMajor >= 2 && req.headers.host === undefined) {
      const authority = req.headers[':authority']
      if (typeof authority === 'string') req.headers.host = authority
    }
    handler(req, res)
  }
}

/**
 * Re-reads the certificates of a listener and swaps them in: the default context by
 * `server.setSecureContext`, the others through the store the SNI callback reads. Open
 * connections and HTTP/2 sessions keep the certificate they were established with.
 *
 * @throws {Error} when a file cannot be read or is invalid (nothing is swapped then)
 */
export function reloadCertificates(server: SecureServer, store: CertificateStore, certs: LoadedCertificate[], cfg: ListenerTlsConfig): void {
  server.setSecureContext({ ...certs[0].pem, ...contextOptions(cfg) })
  store.replace(certs)
}

/**
 * The handler of a `redirect_to_https` listener: every request is answered with
 * `308 Permanent Redirect` (RFC 9110 §15.4.9, method and body kept) to the same host and
 * target over https (nginx `return 308 https://$host$request_uri`).
 *
 * @param target the HTTPS port, or true for the default port 443
 */
export function redirectHandler(target: number | true): http.RequestListener {
  const port = target === true || target === 443 ? '' : `:${target}`
  return (req, res) => {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '')
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)$/.test(host)) {
      res.writeHead(400, { 'content-type': 'text/plain', 'content-length': '12', connection: 'close' })
      res.end('bad request\n')
      return
    }
    const location = `https://${host}${port}${req.url?.startsWith('/') ? req.url : '/'}`
    res.writeHead(308, { location, 'content-type': 'text/plain', 'content-length': '0' })
    res.end()
  }
}
