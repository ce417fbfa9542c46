/** TLS probe: handshake and certificate checks for https:// endpoints, and detection of the wrong scheme on either side. */
import tls from 'node:tls'
import type { Finding } from '../finding.ts'
import { exchange } from './exchange.ts'
import { servername } from './http.ts'
import { fixes, hostPort, nginxDirective, type ProbeOutput, type Target } from './target.ts'

/** The peer certificate, summarised. */
export interface CertificateSummary {
  subject: string
  issuer: string
  /** Expiry as ISO 8601. */
  validTo: string
  /** Whole days until expiry (negative once expired). */
  daysLeft: number
  /** subjectAltName as the certificate states it. */
  altNames?: string
}

/** Raw results of the TLS probe. */
export interface TlsResult {
  /** `verify`: an https:// endpoint; `detect`: an http:// endpoint checked for TLS. */
  mode: 'verify' | 'detect'
  handshake: 'ok' | 'failed' | 'timeout'
  /** TLS version and ALPN protocol negotiated. */
  protocol?: string
  alpn?: string | false
  error?: string
  /** Whether the chain verified against the trust store (Node's bundled CAs plus `ca`). */
  authorized?: boolean
  /** OpenSSL verification error code, e.g. `CERT_HAS_EXPIRED`, `DEPTH_ZERO_SELF_SIGNED_CERT`. */
  authorizationError?: string
  /** Why the certificate does not name the host (RFC 6125), if it does not. */
  nameMismatch?: string
  certificate?: CertificateSummary
  /** verify mode: the port answered a plain HTTP request. */
  plainHttp?: boolean
}

/** Options of {@link probeTls}. */
export interface TlsProbeOptions {
  timeoutMs: number
  /** Extra trusted CA certificates (PEM). */
  ca?: string | string[]
  /** Days of remaining validity below which expiry is a warning; default 14. */
  expiryWarningDays?: number
}

function handshake(target: Target, address: string, opts: TlsProbeOptions): Promise<TlsResult & { cert?: tls.PeerCertificate }> {
  return new Promise((resolve) => {
    const mode = target.scheme === 'https' ? 'verify' : 'detect'
    const socket = tls.connect({
      host: address, port: target.port, servername: servername(target.host), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'],
      ...(opts.ca ? { ca: [...tls.rootCertificates, ...[opts.ca].flat()] } : {}),
    })
    const done = (r: TlsResult & { cert?: tls.PeerCertificate }) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(r)
    }
    const timer = setTimeout(() => done({ mode, handshake: 'timeout', error: `no handshake within ${opts.timeoutMs}ms` }), opts.timeoutMs)
    socket.once('secureConnect', () => {
      const authErr = socket.authorizationError
      done({
        mode, handshake: 'ok', protocol: socket.getProtocol() ?? undefined, alpn: socket.alpnProtocol ?? false,
        authorized: socket.authorized, authorizationError: authErr ? String((authErr as unknown as { code?: string }).code ?? authErr) : undefined,
        cert: socket.getPeerCertificate(),
      })
    })
    socket.once('error', (err: NodeJS.ErrnoException) => done({ mode, handshake: 'failed', error: [err.code, (err as { reason?: string }).reason ?? err.message].filter(Boolean).join(': ') }))
  })
}

/**
 * For https:// endpoints: performs a TLS handshake (certificate not enforced, then judged:
 * chain, host name per RFC 6125 via `tls.checkServerIdentity`, expiry) and, when the
 * handshake fails, checks whether the port speaks plain HTTP. For http:// endpoints:
 * sends a ClientHello to see whether the port speaks TLS. Never throws.
 *
 * Findings: `tls.plain_http_on_https` / `tls.handshake` (tls_protocol_error),
 * `tls.expired` / `tls.untrusted` / `tls.name_mismatch` (tls_certificate_error),
 * `tls.expiring` (warning), `tls.on_http` (http_protocol_error), `tls.ok` (info).
 */
export async function probeTls(target: Target, address: string, opts: TlsProbeOptions): Promise<ProbeOutput<TlsResult>> {
  const { cert, ...result } = await handshake(target, address, opts)
  if (cert && cert.valid_to) {
    const validTo = new Date(cert.valid_to)
    result.certificate = {
      subject: String(cert.subject?.CN ?? JSON.stringify(cert.subject)), issuer: String(cert.issuer?.CN ?? JSON.stringify(cert.issuer)),
      validTo: validTo.toISOString(), daysLeft: Math.floor((validTo.getTime() - Date.now()) / 86_400_000), altNames: cert.subjectaltname,
    }
    const nameErr = tls.checkServerIdentity(target.host, cert)
    if (nameErr) result.nameMismatch = nameErr.message
  }
  if (result.mode === 'verify' && result.handshake !== 'ok') {
    const plain = await exchange({ address, port: target.port, method: 'HEAD', hostHeader: hostPort(target.host, target.port), connectTimeoutMs: opts.timeoutMs, headerTimeoutMs: opts.timeoutMs })
    result.plainHttp = plain.outcome === 'response'
  }
  return { result, findings: tlsFindings(target, result, opts.expiryWarningDays ?? 14) }
}

function tlsFindings(target: Target, r: TlsResult, warnDays: number): Finding[] {
  const where = hostPort(target.host, target.port)
  const evidence: string[] = [`TLS handshake with ${where}: ${r.handshake}${r.error ? ` (${r.error})` : ''}${r.protocol ? `, ${r.protocol}` : ''}`]
  if (r.certificate) {
    const c = r.certificate
    evidence.push(`certificate: subject ${c.subject}, issuer ${c.issuer}, valid to ${c.validTo} (${c.daysLeft} days left)${c.altNames ? `, ${c.altNames}` : ''}`)
  }
  if (r.authorizationError) evidence.push(`chain verification: ${r.authorizationError}`)
  if (r.nameMismatch) evidence.push(`host name check: ${r.nameMismatch}`)
  const base = { target: target.url, evidence }
  if (r.mode === 'detect') {
    if (r.handshake !== 'ok') return []
    return [{ ...base, id: 'tls.on_http', severity: 'critical', cause: 'http_protocol_error', likelihood: 0.95, title: `${target.url} is an http:// endpoint but the port speaks TLS`, fix: fixes.scheme(target, 'https') }]
  }
  if (r.handshake !== 'ok') {
    if (r.plainHttp) {
      evidence.push(`a plain HTTP request to ${where} got an HTTP response`)
      return [{ ...base, id: 'tls.plain_http_on_https', severity: 'critical', cause: 'tls_protocol_error', likelihood: 0.95, title: `${target.url} is an https:// endpoint but the port speaks plain HTTP`, fix: fixes.scheme(target, 'http') }]
    }
    return [{ ...base, id: 'tls.handshake', severity: 'critical', cause: 'tls_protocol_error', likelihood: 0.85, title: `The TLS handshake with ${where} failed`, fix: 'Check the TLS versions and ciphers both sides allow, and that the port speaks TLS.' }]
  }
  // nginx does not verify upstream certificates unless `proxy_ssl_verify on;`, so a bad certificate is a risk there, not the cause.
  const enforced = target.system !== 'nginx' || target.sslVerify === true
  const severity = enforced ? 'critical' : 'warning'
  const likelihood = enforced ? 0.9 : 0.2
  const d = (suffix: string) => nginxDirective(target, suffix)
  const findings: Finding[] = []
  const c = r.certificate
  if (c && c.daysLeft < 0) {
    const off = target.system === 'nginx' ? ` Until then, \`${d('ssl_verify')} off;\` in ${target.location ? `the ${target.location}` : 'the location'} stops the 502s but drops the protection.` : ` Until then, \`upstreams.${target.upstream ?? '<name>'}.tls.insecure_skip_verify: true\` stops the 502s but drops the protection.`
    findings.push({ ...base, id: 'tls.expired', severity, cause: 'tls_certificate_error', likelihood, title: `The certificate of ${where} expired on ${c.validTo} (${-c.daysLeft} days ago)`, fix: `Renew the backend certificate (it expired ${-c.daysLeft} days ago).${enforced ? off : ''}` })
  } else if (r.authorizationError && r.authorizationError !== 'CERT_HAS_EXPIRED') {
    const ca = target.system === 'nginx'
      ? `\`${d('ssl_trusted_certificate')} /path/to/ca.pem;\` in ${target.location ? `the ${target.location}` : 'the location'} (the CA that issued ${c?.issuer ?? 'it'})`
      : `\`upstreams.${target.upstream ?? '<name>'}.tls.ca: /path/to/ca.pem\` (the CA that issued ${c?.issuer ?? 'it'})`
    findings.push({ ...base, id: 'tls.untrusted', severity, cause: 'tls_certificate_error', likelihood, title: `The certificate chain of ${where} is not trusted (${r.authorizationError})`, fix: `Serve the full chain from the backend, or add its CA to ${ca}.` })
  }
  if (r.nameMismatch) {
    const name = target.system === 'nginx' ? `\`${d('ssl_name')}\` (with \`${d('ssl_server_name')} on;\`)` : `\`upstreams.${target.upstream ?? '<name>'}.tls.servername\``
    findings.push({ ...base, id: 'tls.name_mismatch', severity, cause: 'tls_certificate_error', likelihood, title: `The certificate of ${where} does not name ${target.host}`, fix: `Issue a certificate that names ${target.host}, or set ${name} to a name it carries.` })
  }
  if (c && c.daysLeft >= 0 && c.daysLeft < warnDays) {
    findings.push({ ...base, id: 'tls.expiring', severity: 'warning', cause: 'tls_certificate_error', likelihood: 0.1, title: `The certificate of ${where} expires in ${c.daysLeft} days`, fix: 'Renew the backend certificate before it expires.' })
  }
  if (findings.length === 0) findings.push({ ...base, id: 'tls.ok', severity: 'info', cause: null, likelihood: 0, title: `TLS with ${where} works (${r.protocol})`, fix: '' })
  return findings
}
