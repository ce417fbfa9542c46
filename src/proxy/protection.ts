/**
 * The protection phases of the request path (DESIGN §9) as the driver calls them: the
 * per-client cap after "parse", request-body buffering before "select endpoint", and
 * whether a response is buffered. The mechanisms live in src/protect; this file maps
 * their outcomes to causes.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { CauseId } from '../failures/causes.ts'
import { REFUSALS } from '../failures/refusals.ts'
import type { ClientLimiter } from '../protect/client-limit.ts'
import type { Refused } from '../protect/validate.ts'
import { bufferRequestBody, RequestBodyError, type BufferedBody } from '../protect/request-buffer.ts'
import type { BufferBudget } from '../protect/spill.ts'

/** What a listener's requests share for protection (the listener's own `body_idle` is in the handler options). */
export interface Protection {
  /** Memory and temporary-file caps of buffering, for the whole process. */
  budget: BufferBudget
  /** The per-client-address cap. */
  clients: ClientLimiter
}

/** A refusal to answer with: a row of the cause table and a detail; `close` asks for `Connection: close` (the body was not read to its end). */
export interface Refusal {
  id: CauseId
  detail: string
  close: boolean
}

/**
 * Phase "client limit": counts the request against its client address, when a cap is set.
 * @returns true when the request may go on uncounted (no cap), false when it was counted
 *   (count it out with `clients.release` when it ends), else the `client_request_limit` refusal (429)
 */
export function admitClient(clients: ClientLimiter, clientIp: string): Refused | boolean {
  // No cap (the default): no count either, so the request path pays nothing for it.
  if (clients.max === null) return true
  if (clients.acquire(clientIp)) return false
  return {
    refusal: REFUSALS.client_request_limit,
    detail: `client ${clientIp} has ${clients.count(clientIp)} requests in progress (limits.max_requests_per_client_ip ${clients.max})`,
  }
}

/**
 * Phase "buffer request body": reads the body before an endpoint is chosen
 * (nginx `proxy_request_buffering on`).
 *
 * @param bodyIdleMs longest silence while the body is read, in ms (`listeners[].timeouts.body_idle`)
 * @returns the body; or a refusal (413 too large, 408 idle, 500 storage failure); or
 *   `client_closed` when the client went away before the end of its body
 */
export async function bufferBody(req: IncomingMessage, protection: Protection, maxBodyBytes: number | null, bodyIdleMs: number): Promise<BufferedBody | Refusal | 'client_closed'> {
  try {
    return await bufferRequestBody(req, { budget: protection.budget, maxBytes: maxBodyBytes, idleTimeoutMs: bodyIdleMs })
  } catch (err) {
    if (!(err instanceof RequestBodyError)) throw err
    switch (err.code) {
      case 'client_closed': return 'client_closed'
      case 'too_large': return { id: 'http_request_denied.body_too_large', detail: err.message, close: true }
      case 'idle': return { id: 'http_request_error.client_body_timeout', detail: err.message, close: true }
      default: return { id: 'proxy_internal_error', detail: err.message, close: true }
    }
  }
}

/**
 * Whether a response of a route with `buffering.response` on is buffered: never event
 * streams (each event must reach the client when it is sent, WHATWG HTML §9.2) nor
 * responses without a body.
 */
export function buffersResponse(method: string, status: number, headers: IncomingHttpHeaders): boolean {
  if (method === 'HEAD' || status === 204 || status === 304) return false
  const type = headers['content-type']
  return type === undefined || !type.toLowerCase().startsWith('text/event-stream')
}
