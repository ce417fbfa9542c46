/**
 * Requests Node's HTTP/1 parser refuses before Portico sees them (`'clientError'`): a
 * request that is not valid HTTP/1.1, a header section over `listeners[].max_header_size`,
 * a header not received within `listeners[].timeouts.header_read`. Each is answered like
 * every refusal (its status, `Proxy-Status: portico; error=http_request_error;
 * details="<refusal>"`, `X-Request-Id`, a page) and logged, instead of Node's bare reply.
 */
import { randomRequestId } from '../lib/request-id.ts'
import { http } from '../lib/node-http.ts'
import type { Duplex } from 'node:stream'
import { REFUSALS, type RefusalName } from '../failures/refusals.ts'
import { CoalescingResponse } from '../lib/coalesce.ts'
import type { AccessLogSink } from '../observe/access-log.ts'
import { RequestContext } from '../observe/context.ts'
import { answerOnConnection } from './driver.ts'
import { refusalResponse, writeOnSocket } from './refuse.ts'
import type { Runtime } from './runtime.ts'

/**
 * The refusal of a parser error, or null for an error that is not the client's request (a
 * reset, a broken pipe). A header overflow hit before the end of a request line that starts
 * the bytes read is a target too long (414, RFC 9112 §3), else a header section too large.
 *
 * @param err the parser error: `code`, and `rawPacket` with `bytesParsed`, where it stopped in them
 */
export function parserRefusal(err: { code?: string; rawPacket?: unknown; bytesParsed?: number }): RefusalName | null {
  const code = err.code
  if (code === 'HPE_HEADER_OVERFLOW') return requestLineUnended(err.rawPacket, err.bytesParsed) ? 'uri_too_long' : 'request_header_too_large'
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'request_header_timeout'
  if (code !== undefined && code.startsWith('HPE_')) return 'malformed_request'
  return null
}

/** Whether `raw` starts with a method and a space and has no line end before `stop` (where the parser gave up). */
function requestLineUnended(raw: unknown, stop: number | undefined): boolean {
  if (!Buffer.isBuffer(raw)) return false
  const space = raw.indexOf(32)
  if (space < 1 || space > 20) return false
  for (let i = 0; i < space; i++) if (raw[i] < 0x41 || raw[i] > 0x5a) return false
  const lf = raw.indexOf(10)
  return lf < 0 || (stop !== undefined && lf >= stop)
}

/** Whether `res` has ended, its end deferred to the end of the turn included (which this runs now). */
function endsThisTurn(res: http.ServerResponse): boolean {
  if (res instanceof CoalescingResponse) res.endDeferred()
  return res.writableEnded
}

/** Method and target of the request line as far as it was received, for the log (bounded, never trusted). */
function requestLine(raw: unknown): { method: string; target: string } {
  if (!Buffer.isBuffer(raw)) return { method: '', target: '' }
  const head = raw.subarray(0, 1024).toString('latin1')
  const end = head.indexOf('\r\n')
  const [method = '', target = ''] = (end < 0 ? head : head.slice(0, end)).split(' ')
  return { method: /^[A-Za-z]{1,20}$/.test(method) ? method : '', target: target.slice(0, 512) }
}

/**
 * Creates the `'clientError'` handler of a listener: answers a classified refusal when the
 * connection can still take one (nothing of a response is on it), then closes it; logs
 * one access log line with what was received of the request line. Errors that are not the
 * request's (ECONNRESET, EPIPE) close the connection silently, as Node does.
 *
 * @param getRuntime the runtime in force
 * @param log the access log
 */
export function createClientErrorHandler(getRuntime: () => Runtime, log: AccessLogSink) {
  return function onClientError(err: NodeJS.ErrnoException & { rawPacket?: unknown; bytesParsed?: number }, socket: Duplex): void {
    const name = parserRefusal(err)
    // Node's own test: a response already started on this connection cannot be followed by another.
    const current = (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage
    const busy = current?.headersSent === true
    if (busy && socket.writable && endsThisTurn(current as http.ServerResponse)) {
      // A response complete but still held by write coalescing (a refusal of the request whose
      // body the parser then failed on, say) leaves before the close instead of being lost.
      socket.on('error', () => {})
      socket.end()
      socket.once('finish', () => socket.destroy())
      return
    }
    // The client closed its side in the middle of a request body: it left, and that request's line says 499.
    const left = err.code === 'HPE_INVALID_EOF_STATE' && current?.req.complete === false
    if (name === null || busy || left || !socket.writable) {
      socket.destroy()
      return
    }
    // The body of the request being proxied broke the framing: its own log line says so (no 499 beside it).
    const inFlight = current ? answerOnConnection(current) : null
    let ctx = inFlight
    if (ctx === null) {
      const { method, target } = requestLine(err.rawPacket)
      const remote = (socket as { remoteAddress?: string }).remoteAddress ?? ''
      ctx = new RequestContext(randomRequestId(), remote, method, '', target, 'HTTP/1.1')
    }
    const r = refusalResponse(ctx, undefined, getRuntime(), { refusal: REFUSALS[name], detail: `${err.code}: ${err.message}`.slice(0, 200) }, true, null)
    writeOnSocket(socket, r, true)
    if (inFlight !== null) return
    ctx.logged = true
    log.write(ctx)
  }
}
