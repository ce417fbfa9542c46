/**
 * TLS termination of HTTPS listeners: certificates read from PEM files, chosen by SNI
 * (exact and wildcard names) and, for one name, by key type (RSA or ECDSA); HTTP/2 and
 * HTTP/1.1 offered by ALPN; ECDHE+AEAD TLS 1.2 suites, no client renegotiation, HSTS and
 * OCSP stapling from a file; certificates swapped on reload without dropping connections;
 * and the plain listener that redirects to HTTPS.
 */
import { readFileSync } from 'node:fs'
import { http } from '../lib/node-http.ts'
import type http2 from 'node:http2'
import type https from 'node:https'
import type { Socket } from 'node:net'
import type tls from 'node:tls'
import { nodeCrypto, nodeHttp2, nodeHttps, nodeTls } from '../lib/lazy-builtins.ts'
import type { ListenerConfig } from '../config/schema.ts'
import { logger } from '../lib/logger.ts'
import { CLIENT_HELLO, peekClientHello, type ClientHelloInfo, type HelloSocket } from './client-hello.ts'


/** The `tls` block of a listener, with defaults applied. */
export type ListenerTlsConfig = NonNullable<ListenerConfig['tls']>

/**
 * The certificates of one set of host names, loaded from disk: one per key type (an RSA
 * and an ECDSA certificate for the same names share one secure context, and OpenSSL picks
 * per handshake the one the client's signature algorithms and cipher suites allow, as
 * nginx does with two `ssl_certificate` lines).
 */
export interface LoadedCertificate {
  /** Path of the first certificate PEM, for messages. */
  certPath: string
  /** Paths of every certificate PEM in this context. */
  certPaths: string[]
  /** Lower-cased DNS names from subjectAltName, or the subject CN when there is no DNS SAN (RFC 6125 §6.4.4); may start with `*.`. */
  names: string[]
  /** Key type of each certificate (`rsa`, `ec`, ...), in the order of `certPaths`. */
  keyTypes: string[]
  /** The PEM certificate chains and keys, as read, one of each per certificate. */
  pem: { cert: string[]; key: string[] }
  /** The stapled OCSP response (DER), when one is configured and the context holds one certificate. */
  ocspResponse: Buffer | null
  /** SHA-256 fingerprint of the first certificate, to find `ocspResponse` from the certificate OpenSSL reports. */
  fingerprint: string
  context: tls.SecureContext
  /**
   * For names with an RSA and an ECDSA certificate: a context of each alone, for a
   * handshake that chose these names by SNI (Node installs one certificate of such a
   * context, so the listener picks the one the client's ClientHello allows); else null.
   */
  byKeyType: { rsa: tls.SecureContext; ec: tls.SecureContext } | null
}

/**
 * The host names a certificate serves: its subjectAltName DNS entries, or its subject CN
 * when it has none (RFC 6125 §6.4.4), lower-cased.
 *
 * @param pem a PEM certificate (the first of a chain is used)
 */
export function certificateNames(pem: string): string[] {
  const x509 = new (nodeCrypto().X509Certificate)(pem)
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

/**
 * The TLS 1.3 suites of Node's default list, kept whatever `ciphers` says (OpenSSL sets
 * the TLS 1.3 suites apart from the TLS 1.2 list; Node splits one string by the `TLS_` prefix).
 */
let tls13Suites: string | undefined
const TLS13_SUITES = (): string => (tls13Suites ??= nodeTls().DEFAULT_CIPHERS.split(':').filter((c) => c.startsWith('TLS_')).join(':'))

/**
 * Secure-context options every certificate of a listener shares: `ssl_protocols`,
 * `ssl_ciphers` (the TLS 1.2 list of `ciphers` after Node's TLS 1.3 suites) and
 * `ssl_prefer_server_ciphers on` (the server's order wins, so AEAD with ECDHE is chosen).
 */
function contextOptions(cfg: ListenerTlsConfig): tls.SecureContextOptions {
  const own13 = cfg.ciphers.split(':').some((c) => c.startsWith('TLS_'))
  return { minVersion: cfg.min_version, ciphers: own13 ? cfg.ciphers : `${TLS13_SUITES()}:${cfg.ciphers}`, honorCipherOrder: true }
}

/** One `certificates` entry as read from disk, before entries for the same names are put together. */
interface CertificateFile {
  cert: string
  key: string
  certPath: string
  keyPath: string
  names: string[]
  keyType: string
  fingerprint: string
  ocspResponse: Buffer | null
}

function readCertificateFile(c: ListenerTlsConfig['certificates'][number]): CertificateFile {
  let cert: string
  let key: string
  let ocspResponse: Buffer | null = null
  try {
    cert = readFileSync(c.cert, 'utf8')
    key = readFileSync(c.key, 'utf8')
    if (c.ocsp_response !== undefined) ocspResponse = readFileSync(c.ocsp_response)
  } catch (err) {
    throw new Error(`cannot read TLS certificate, key or OCSP response: ${(err as Error).message}`, { cause: err })
  }
  try {
    const x509 = new (nodeCrypto().X509Certificate)(cert)
    return {
      cert, key, certPath: c.cert, keyPath: c.key, names: certificateNames(cert),
      keyType: x509.publicKey.asymmetricKeyType ?? 'unknown', fingerprint: x509.fingerprint256, ocspResponse,
    }
  } catch (err) {
    throw new Error(`invalid TLS certificate ${c.cert}: ${(err as Error).message}`, { cause: err })
  }
}

/** Whether two certificates serve the same set of names. */
function sameNames(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((n) => b.includes(n))
}

/**
 * What is wrong but not fatal in the certificates of a listener, for `portico check` and
 * the start-up log: a second certificate of the same key type for the same names (never
 * served); an OCSP response that cannot be stapled because its names have two certificates.
 *
 * @throws {Error} naming the file when a PEM cannot be read
 */
export function certificateWarnings(cfg: ListenerTlsConfig): string[] {
  return groupCertificates(cfg.certificates.map(readCertificateFile)).warnings
}

function groupCertificates(files: CertificateFile[]): { groups: CertificateFile[][]; warnings: string[] } {
  const groups: CertificateFile[][] = []
  const warnings: string[] = []
  for (const f of files) {
    const group = groups.find((g) => sameNames(g[0].names, f.names))
    if (group === undefined) {
      groups.push([f])
      continue
    }
    const twin = group.find((g) => g.keyType === f.keyType)
    if (twin !== undefined) {
      warnings.push(`certificate ${f.certPath} is never served: ${twin.certPath} has the same names (${f.names.join(', ')}) and the same key type (${f.keyType}); give one RSA and one ECDSA certificate per name at most`)
      continue
    }
    group.push(f)
  }
  for (const g of groups) {
    if (g.length > 1 && g.some((f) => f.ocspResponse !== null)) {
      warnings.push(`OCSP responses of ${g.map((f) => f.certPath).join(' and ')} are not stapled: these certificates serve the same names, and the response cannot be matched to the one a client gets`)
    }
  }
  return { groups, warnings }
}

/**
 * Reads the certificates of a listener from disk and builds their secure contexts: one a
 * set of names, holding up to one certificate per key type (RSA and ECDSA side by side;
 * both are served for the default names, the first listed).
 * A second certificate of a key type already present for the same names is left out
 * (see {@link certificateWarnings}).
 *
 * @throws {Error} naming the file when a PEM cannot be read or the key does not match the certificate
 */
export function loadCertificates(cfg: ListenerTlsConfig): LoadedCertificate[] {
  const { groups } = groupCertificates(cfg.certificates.map(readCertificateFile))
  return groups.map((g) => {
    const pem = { cert: g.map((f) => f.cert), key: g.map((f) => f.key) }
    let context: tls.SecureContext
    try {
      context = nodeTls().createSecureContext({ ...pem, ...contextOptions(cfg) })
    } catch (err) {
      throw new Error(`invalid TLS certificate ${g.map((f) => f.certPath).join(' or ')} or key ${g.map((f) => f.keyPath).join(' or ')}: ${(err as Error).message}`, { cause: err })
    }
    const rsa = g.find((f) => f.keyType === 'rsa')
    const ec = g.find((f) => f.keyType === 'ec')
    const byKeyType = rsa && ec
      ? { rsa: nodeTls().createSecureContext({ cert: rsa.cert, key: rsa.key, ...contextOptions(cfg) }), ec: nodeTls().createSecureContext({ cert: ec.cert, key: ec.key, ...contextOptions(cfg) }) }
      : null
    return {
      certPath: g[0].certPath, certPaths: g.map((f) => f.certPath), names: g[0].names, keyTypes: g.map((f) => f.keyType), pem,
      ocspResponse: g.length === 1 ? g[0].ocspResponse : null, fingerprint: g[0].fingerprint, context, byKeyType,
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

  /** Whether any certificate has an OCSP response to staple. */
  get stapling(): boolean {
    return this.#certs.some((c) => c.ocspResponse !== null)
  }

  /**
   * `'OCSPRequest'` listener of the TLS server: the configured response of the certificate
   * in use, or none (the handshake goes on without a staple).
   */
  readonly ocspCallback = (certificate: Buffer, _issuer: Buffer, cb: (err: Error | null, response?: Buffer) => void): void => {
    let response: Buffer | null = null
    try {
      const fingerprint = new (nodeCrypto().X509Certificate)(certificate).fingerprint256
      response = this.#certs.find((c) => c.fingerprint === fingerprint)?.ocspResponse ?? null
    } catch {
      // No certificate to match: nothing to staple.
    }
    cb(null, response ?? undefined)
  }

  /** Whether names chosen by SNI have an RSA and an ECDSA certificate: connections then have their ClientHello read first ({@link peekClientHello}). */
  get needsClientHello(): boolean {
    return this.#certs.some((c, i) => i > 0 && c.byKeyType !== null)
  }

  /**
   * The context for `servername` on a connection whose ClientHello says `hello`: none for
   * the default certificates (the server's own context holds every key type of them, and
   * OpenSSL picks per handshake); for other names with an RSA and an ECDSA certificate,
   * the ECDSA one when the client can take it (as nginx and OpenSSL choose), else RSA.
   */
  contextFor(servername: string, hello: ClientHelloInfo | null | undefined): tls.SecureContext | undefined {
    const c = this.select(servername)
    if (c === this.#certs[0]) return undefined
    if (c.byKeyType !== null) return hello?.ecdsa ? c.byKeyType.ec : c.byKeyType.rsa
    return c.context
  }

  /**
   * `SNICallback` for `tls.createServer` and `http2.createSecureServer`, called with the
   * TLS socket as `this` (its `_parent` is the connection that may carry its ClientHello).
   */
  readonly sniCallback: (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void = (() => {
    const store = this
    return function sni(this: { _parent?: HelloSocket } | undefined, servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void {
      cb(null, store.contextFor(servername, this?._parent?.[CLIENT_HELLO]))
    }
  })()
}

/** Longest wait for a ClientHello on a connection whose certificate depends on it, in ms. */
const CLIENT_HELLO_TIMEOUT_MS = 10_000
/** Servers whose connections have their ClientHello read before the TLS server takes them. */
const PEEKING = new WeakSet<SecureServer>()

/**
 * Makes `server` read each connection's ClientHello before its TLS handshake starts, when
 * its certificates need it (an RSA and an ECDSA certificate for names chosen by SNI). The
 * TLS server's own connection listeners run once the hello is read, with the bytes put back.
 */
function peekWhenNeeded(server: SecureServer, store: CertificateStore): void {
  if (!store.needsClientHello || PEEKING.has(server)) return
  PEEKING.add(server)
  const own = server.listeners('connection') as Array<(socket: Socket) => void>
  server.removeAllListeners('connection')
  server.on('connection', (socket: Socket) => {
    peekClientHello(socket, CLIENT_HELLO_TIMEOUT_MS, () => {
      if (socket.destroyed) return
      for (const l of own) l.call(server, socket)
    })
  })
}

/** A server that terminates TLS for one listener. */
export type SecureServer = http2.Http2SecureServer | https.Server

/** Server options of the plain-HTTP side shared by every listener. */
export type Http1Options = Pick<http.ServerOptions, 'maxHeaderSize' | 'headersTimeout' | 'requestTimeout' | 'keepAliveTimeout' | 'connectionsCheckingInterval' | 'noDelay' | 'requireHostHeader' | 'ServerResponse'>

/** HTTP/2 SETTINGS a listener advertises (RFC 9113 §6.5.2). */
export interface Http2Settings {
  /** SETTINGS_MAX_HEADER_LIST_SIZE: largest header list accepted, in bytes. */
  maxHeaderListSize: number
  /** SETTINGS_MAX_CONCURRENT_STREAMS: most streams a client may have open at once (nginx `http2_max_concurrent_streams`, 128). */
  maxConcurrentStreams: number
}

/**
 * Creates the server of an HTTPS listener. With `h2` in `alpn` it is
 * `http2.createSecureServer` (RFC 9113 over TLS, ALPN `h2`), accepting HTTP/1.1 too when
 * `alpn` lists `http/1.1`; both reach `handler` (HTTP/2 through the compatibility API).
 * Without `h2` it is an HTTPS/1.1 server.
 *
 * Every connection refuses client-initiated renegotiation (as nginx does: a TLS 1.2
 * client that asks for one is disconnected); TLS 1.3 has none. Responses carry
 * `Strict-Transport-Security` when `cfg.hsts` is set, and certificates with an OCSP
 * response get it stapled.
 *
 * @param cfg the listener's `tls` block
 * @param store the listener's certificates (the SNI callback reads it on each handshake)
 * @param http1 HTTP/1.1 limits and timeouts of the listener
 * @param settings the HTTP/2 SETTINGS advertised
 * @param idleTimeoutMs how long an HTTP/2 session with no open stream stays open before GOAWAY, in ms (nginx `keepalive_timeout`, as for HTTP/1.1 keep-alive)
 */
export function createSecureServer(cfg: ListenerTlsConfig, store: CertificateStore, http1: Http1Options, settings: Http2Settings, idleTimeoutMs: number, handler: http.RequestListener): SecureServer {
  const secure = { ...store.default.pem, ...contextOptions(cfg), SNICallback: store.sniCallback }
  const h2 = cfg.alpn.includes('h2')
  const wrapped = secureHandler(handler, cfg.hsts === undefined ? null : hstsValue(cfg.hsts))
  const server: SecureServer = h2
    ? nodeHttp2().createSecureServer({
      ...http1,
      ...secure,
      allowHTTP1: cfg.alpn.includes('http/1.1'),
      Http1ServerResponse: http1.ServerResponse,
      settings: { maxHeaderListSize: settings.maxHeaderListSize, maxConcurrentStreams: settings.maxConcurrentStreams },
      maxSessionInvalidFrames: 1000,
    }, wrapped as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void)
    : nodeHttps().createServer({ ...http1, ...secure, ALPNProtocols: ['http/1.1'] }, wrapped)
  server.on('secureConnection', refuseRenegotiation)
  peekWhenNeeded(server, store)
  if (store.stapling) server.on('OCSPRequest', store.ocspCallback)
  if (h2) (server as http2.Http2SecureServer).on('session', (session) => closeWhenIdle(session, idleTimeoutMs))
  return server
}

/** The `Strict-Transport-Security` value of an `hsts` block (RFC 6797 §6.1): max-age in whole seconds. */
export function hstsValue(hsts: NonNullable<ListenerTlsConfig['hsts']>): string {
  return `max-age=${Math.floor(hsts.max_age / 1000)}${hsts.include_subdomains ? '; includeSubDomains' : ''}${hsts.preload ? '; preload' : ''}`
}

/**
 * Refuses client-initiated renegotiation on a TLS connection (CVE-2011-1473: each one
 * costs the server a handshake; nginx refuses them since 0.8.23). A client that tries is
 * disconnected with `ERR_TLS_RENEGOTIATION_DISABLED`, logged once per connection.
 */
function refuseRenegotiation(socket: tls.TLSSocket): void {
  socket.disableRenegotiation()
  socket.once('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED') logger.warn({ client_ip: socket.remoteAddress }, 'TLS renegotiation asked by the client refused; connection closed')
  })
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
 * The request handler of a TLS listener around the proxy's: adds `Strict-Transport-Security`
 * when `hsts` is set, and for HTTP/2 gives requests a `host` header from `:authority`
 * (RFC 9113 §8.3.1: a client sends one or the other; an intermediary makes a Host for
 * HTTP/1.1 from `:authority`), so routing, logs and the upstream request read one field
 * for both versions.
 */
function secureHandler(handler: http.RequestListener, hsts: string | null): http.RequestListener {
  return (req, res) => {
    if (hsts !== null) res.setHeader('strict-transport-security', hsts)
    if (req.httpVersionMajor >= 2) {
      if (req.headers.host === undefined) {
        const authority = req.headers[':authority']
        if (typeof authority === 'string') req.headers.host = authority
      }
      ;(req as unknown as http2.Http2ServerRequest).stream.once('finish', drainReceivedRequest)
    }
    handler(req, res)
  }
}

/**
 * On the end of a response, lets a fully received but unread request body flow (and be
 * dropped). Node closes a server stream whose request side was never read with
 * `RST_STREAM(NO_ERROR)` as soon as the response is handed to nghttp2, and the DATA
 * frames still held back by flow control are then never sent: the client sees a
 * truncated response without END_STREAM. Once the request side flows, the stream closes
 * normally after its last DATA frame. A request body still arriving keeps Node's reset
 * (RFC 9113 §8.1 allows it after a complete response).
 */
function drainReceivedRequest(this: http2.ServerHttp2Stream): void {
  if (this.readableFlowing === null && this.state.remoteClose === 1) this.resume()
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
  peekWhenNeeded(server, store)
  if (store.stapling && server.listenerCount('OCSPRequest') === 0) server.on('OCSPRequest', store.ocspCallback)
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
