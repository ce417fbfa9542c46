/**
 * The classifier: the one place where raw errors (errno codes, TLS codes, undici and
 * llhttp codes, Portico's own timeouts) become causes from the cause table.
 */
import { CAUSES, type CauseId, type CauseType, type VariedCauseType } from './causes.ts'
import type { FailureStage } from './lifecycle.ts'

export type { FailureStage } from './lifecycle.ts'

/**
 * An error whose cause Portico already knows: its own timers (connect, first-byte, idle,
 * total) and its own limits raise these, so the classifier never has to guess them.
 */
export class GatewayError extends Error {
  /** Always `PORTICO_GATEWAY_ERROR`; the cause is in `type`. */
  readonly code = 'PORTICO_GATEWAY_ERROR'
  /** The RFC 9209 type of the cause. */
  readonly type: CauseType
  /** The row of the cause table (the type, or `type.variant`). */
  readonly causeId: CauseId
  constructor(id: CauseId, message: string) {
    super(message)
    this.name = 'GatewayError'
    this.causeId = id
    this.type = CAUSES[id].type
  }
}

/** What the classifier returns: the cause and a short detail in plain words. */
export interface Classification {
  /** The RFC 9209 type. */
  type: CauseType
  /** The row of the cause table to answer with: `type` itself, or a variant of it a {@link GatewayError} named. */
  causeId: CauseId
  /** Short, human detail, e.g. `connect ECONNREFUSED 127.0.0.1:3000`; internal, masked from clients by default. */
  detail: string
}

const DNS_ERROR = new Set(['ENOTFOUND', 'ENODATA', 'ESERVFAIL', 'EREFUSED', 'EBADNAME', 'ENONAME', 'EAI_NONAME', 'EAI_FAIL', 'ENOTIMP', 'EFORMERR', 'EBADRESP'])
const DNS_TIMEOUT = new Set(['EAI_AGAIN', 'ETIMEOUT', 'ECONNREFUSED_DNS'])
const UNROUTABLE = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL'])
const TERMINATED = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'ERR_STREAM_PREMATURE_CLOSE'])
const CERT_ERRORS = new Set([
  'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED', 'INVALID_CA', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_FORMAT',
])

/**
 * Maps a raw error to its cause.
 *
 * @param err anything thrown or emitted by the upstream exchange
 * @param stage where the exchange was when it failed
 * @returns the cause and a short detail; unknown errors before the header become
 *   `connection_terminated`, unknown errors after it `http_response_incomplete`, and
 *   anything that is not a network error `proxy_internal_error`.
 */
export function classify(err: unknown, stage: FailureStage): Classification {
  if (err instanceof GatewayError) return { type: err.type, causeId: err.causeId, detail: err.message }
  const e = err as NodeJS.ErrnoException & { code?: string }
  const code = typeof e?.code === 'string' ? e.code : ''
  const detail = describe(e)

  if (stage === 'stream_response') {
    // Once the status line went downstream, every upstream failure is an incomplete response.
    return found('http_response_incomplete', detail)
  }
  if (DNS_ERROR.has(code)) return found('dns_error', detail)
  if (DNS_TIMEOUT.has(code)) return found('dns_timeout', detail)
  if (code === 'ECONNREFUSED') return found('connection_refused', detail)
  // Unix socket endpoints: no socket file at the path, or no write permission on it, refuse like a closed port;
  // a full backlog fails at once with EAGAIN where TCP would drop the SYN.
  if (stage === 'connect' && (code === 'ENOENT' || code === 'EACCES')) return found('connection_refused', detail)
  if (stage === 'connect' && code === 'EAGAIN') return found('connection_timeout', detail)
  if (UNROUTABLE.has(code)) return found('destination_ip_unroutable', detail)
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return found(stage === 'connect' ? 'connection_timeout' : 'http_response_timeout', detail)
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return found('http_response_timeout', detail)
  if (code === 'UND_ERR_HEADERS_OVERFLOW' || code === 'HPE_HEADER_OVERFLOW') {
    return found('http_response_header_section_size', detail)
  }
  if (CERT_ERRORS.has(code) || code.startsWith('ERR_TLS_CERT')) return found('tls_certificate_error', certificateReason(code, e.message ?? ''))
  if (code.startsWith('ERR_SSL_') || code === 'EPROTO' || code.startsWith('ERR_TLS_')) {
    return found('tls_protocol_error', handshakeReason(code, e.message ?? ''))
  }
  if (e?.name === 'HTTPParserError' || code.startsWith('HPE_') || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_INFO') {
    return found('http_protocol_error', detail)
  }
  if (code === 'UND_ERR_SOCKET' && /bad (response|upgrade)/.test(e.message)) return found('http_protocol_error', detail)
  if (TERMINATED.has(code)) return found('connection_terminated', detail)
  if (code.startsWith('E') || code.startsWith('UND_ERR_')) return found('connection_terminated', detail)
  return found('proxy_internal_error', detail)
}

/** A classification read from a raw error: the row of the table is the type's own. */
function found(type: Exclude<CauseType, VariedCauseType>, detail: string): Classification {
  return { type, causeId: type, detail }
}

/** Reasons of certificate codes in the words an operator searches for; the code follows in parentheses. */
const CERT_REASONS: Record<string, string> = {
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid; check the clocks',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate; trust it with the upstream\'s tls.ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in the chain; trust its root with the upstream\'s tls.ca',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate issuer unknown: a missing intermediate, or a private CA not in tls.ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate issuer unknown: a missing intermediate, or a private CA not in tls.ca',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate issuer unknown: a missing intermediate, or a private CA not in tls.ca',
  CERT_REVOKED: 'certificate revoked',
  CERT_SIGNATURE_FAILURE: 'certificate signature invalid',
}

/**
 * A certificate failure in plain words: `certificate has expired (CERT_HAS_EXPIRED)`,
 * `wrong host name: Host: a. is not in the cert's altnames: DNS:b (ERR_TLS_CERT_ALTNAME_INVALID)`.
 */
function certificateReason(code: string, message: string): string {
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') {
    // Node: "Hostname/IP does not match certificate's altnames: Host: x. is not in the cert's altnames: DNS:y"
    const why = message.split('\n')[0].replace(/^Hostname\/IP does not match certificate's altnames: /, '')
    return `wrong host name: ${why.slice(0, 200)} (${code})`
  }
  const reason = CERT_REASONS[code] ?? message.split(/[;\n]/)[0].slice(0, 200)
  return `${reason} (${code})`
}

/**
 * A handshake failure in plain words: the reason field of an OpenSSL error string
 * (`...:SSL routines:func:wrong version number:file:line:`), with a hint for the common ones.
 */
function handshakeReason(code: string, message: string): string {
  const m = /SSL routines:[^:]*:([^:]+)/.exec(message)
  const reason = (m ? m[1] : message.split('\n')[0]).trim().slice(0, 200)
  const hint = /wrong version number|packet length too long|http request/.test(reason)
    ? '; the endpoint does not speak TLS (plain HTTP behind an https:// URL?)'
    : /protocol version|unsupported protocol/.test(reason) ? '; no TLS version both sides accept' : ''
  return `TLS handshake failed: ${reason}${hint} (${code || 'EPROTO'})`
}

/** A short one-line detail: the code and message, without stack. */
function describe(e: { code?: string; message?: string } | undefined): string {
  if (!e) return 'unknown error'
  const msg = (e.message ?? String(e)).split('\n')[0].slice(0, 200)
  return e.code && !msg.includes(e.code) ? `${e.code}: ${msg}` : msg
}
