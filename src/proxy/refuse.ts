/**
 * Answers the refusals of the "validate request" phase (src/protect/validate.ts) like any
 * proxy-generated error: the refusal's status, `Proxy-Status: portico; error=<type>;
 * details="<refusal>"`, `X-Request-Id`, an HTML or JSON page with the refusal's words, and
 * the log line (`error` the type, `details` starting with the refusal's name).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { STATUS_CODES } from '../lib/node-http.ts'
import { CAUSES, type CauseId } from '../failures/causes.ts'
import { errorStatus, prefersJson, renderErrorPage } from '../failures/error-page.ts'
import { proxyStatusError } from '../failures/proxy-status.ts'
import type { RequestContext } from '../observe/context.ts'
import { declinedUpgrade, validateRequest, type Refused, type RequestRules } from '../protect/validate.ts'
import type { Runtime } from './runtime.ts'
import type { FilterRefused } from '../protect/filter.ts'

/** A proxy-generated response before it is written: status, lower-case header fields, body. */
export interface PageResponse {
  status: number
  /** Content-Type, Content-Length, Cache-Control, Proxy-Status, X-Request-Id, and Retry-After when the cause asks for one. */
  headers: Record<string, string>
  body: Buffer
}

/**
 * Builds the response of the cause table row `id`: its status and `Retry-After`, the given
 * `Proxy-Status`, `X-Request-Id`, and an HTML or JSON page by `Accept`. Changes nothing;
 * the one builder of error pages and refusals.
 *
 * @param endpoint `host:port` the page names when details are exposed, or null
 */
export function pageResponse(ctx: RequestContext, accept: string | undefined, rt: Runtime, id: CauseId, detail: string | null, endpoint: string | null, proxyStatus: string): PageResponse {
  const page = renderErrorPage({ cause: id, requestId: ctx.requestId, detail, endpoint, expose: rt.config.expose_error_details }, prefersJson(accept))
  const body = Buffer.from(page.body)
  const headers: Record<string, string> = {
    'content-type': page.contentType,
    'content-length': String(body.length),
    'cache-control': 'no-store',
    'proxy-status': proxyStatus,
    'x-request-id': ctx.requestId,
  }
  const retryAfterS = CAUSES[id].retryAfterS
  if (retryAfterS !== null) headers['retry-after'] = String(retryAfterS)
  return { status: errorStatus(id), headers, body }
}

/**
 * Writes `r` on an HTTP/1 connection no `ServerResponse` owns (a refused upgrade, a
 * CONNECT, a request the parser failed on) with `Connection: close`, and closes the
 * connection once it is sent, without waiting for the client's side of a half-open one.
 *
 * @param sendBody false for a HEAD request
 */
export function writeOnSocket(socket: Duplex, r: PageResponse, sendBody: boolean): void {
  if (socket.destroyed) return
  r.headers.connection = 'close'
  let head = `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? ''}\r\n`
  for (const name in r.headers) head += `${name}: ${r.headers[name]}\r\n`
  head += '\r\n'
  socket.on('error', ignore)
  socket.end(sendBody ? Buffer.concat([Buffer.from(head, 'latin1'), r.body]) : head)
  socket.once('finish', destroySocket)
}

function ignore(): void {}

function destroySocket(this: Duplex): void {
  this.destroy()
}

/**
 * Builds the response of a refusal ({@link pageResponse}) and records it in `ctx` (status, error, details).
 * A malformed request (`http_request_error`) closes an HTTP/1 connection after the answer,
 * as nginx does after a 400: what follows on it cannot be trusted to be framed right.
 *
 * @param http1 whether the client connection is HTTP/1 (HTTP/2 has no Connection field)
 */
export function refusalResponse(ctx: RequestContext, accept: string | undefined, rt: Runtime, r: Refused, http1: boolean, rules: RequestRules | null): PageResponse {
  const { refusal } = r
  // The refusal's name tells the client what to fix and says nothing of the backend: always sent.
  const out = pageResponse(ctx, accept, rt, refusal.id, r.detail, null, proxyStatusError(rt.config.proxy_name, refusal.type, refusal.name))
  if (refusal.status === 405 && rules !== null) out.headers.allow = rules.allow
  if (http1 && refusal.type === 'http_request_error') out.headers.connection = 'close'
  ctx.error = refusal.type
  ctx.details = `${refusal.name}: ${r.detail}`
  ctx.status = out.status
  ctx.bytesSent = out.body.length
  return out
}

/**
 * The "validate request" hook of the driver: validates and normalises the request
 * (src/protect/validate.ts) and answers a refusal. A declined upgrade's response closes
 * its connection.
 *
 * @returns whether the request goes on to routing
 */
export function admitRequest(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, rt: Runtime, rules: RequestRules): boolean {
  const r = validateRequest(req, rules)
  if (r === null) {
    if (declinedUpgrade(req)) res.setHeader('connection', 'close')
    return true
  }
  writeRefusal(ctx, req, res, rt, r, rules, null)
  return false
}

/**
 * Writes a refusal ({@link refusalResponse}) with `extra` header fields on top (the rate
 * limit's `Retry-After`, `RateLimit-Policy`, `RateLimit`); a HEAD request gets no body.
 */
export function writeRefusal(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, rt: Runtime, r: Refused, rules: RequestRules | null, extra: Record<string, string> | null): void {
  const { status, headers, body } = refusalResponse(ctx, req.headers.accept, rt, r, req.httpVersionMajor < 2, rules)
  if (extra !== null) Object.assign(headers, extra)
  res.writeHead(status, headers)
  if (req.method === 'HEAD') {
    ctx.bytesSent = 0
    res.end()
  } else {
    res.end(body)
  }
}

/**
 * Answers a refusal of the filtering phase (src/protect/filter.ts: access rules, rate
 * limits, `limit_conn`) with its extra fields (`Retry-After`, `RateLimit-Policy`, `RateLimit`).
 */
export function answerRefusal(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, rt: Runtime, r: FilterRefused): void {
  if (res.headersSent || res.destroyed) return
  writeRefusal(ctx, req, res, rt, r, null, r.headers)
}
