/**
 * CONNECT on a listener (RFC 9110 §9.3.6): Portico is a reverse proxy and never opens
 * tunnels to where a client asks, so a CONNECT request is refused with 405
 * `method_not_allowed`, as nginx does, with its log line, on the raw connection Node
 * hands over.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { REFUSALS } from '../failures/refusals.ts'
import type { AccessLogSink } from '../observe/access-log.ts'
import type { RequestRules } from '../protect/validate.ts'
import { parseRequest } from './driver.ts'
import { refusalResponse, writeOnSocket } from './refuse.ts'
import type { Runtime } from './runtime.ts'

/**
 * Creates the handler of a server's `'connect'` event: answers 405 with `Allow`,
 * `Proxy-Status: portico; error=http_request_denied; details="method_not_allowed"`, then
 * closes the HTTP/1 connection (an HTTP/2 CONNECT stream just ends), and writes the
 * access log line.
 *
 * @param getRuntime the runtime in force
 * @param log the access log
 * @param rules the listener's request rules (for `Allow`)
 */
export function createConnectRefusal(getRuntime: () => Runtime, log: AccessLogSink, rules: RequestRules) {
  return function refuseConnect(req: IncomingMessage, out: Duplex | ServerResponse): void {
    const rt = getRuntime()
    const ctx = parseRequest(req, getRuntime().filters.trusted)
    // HTTP/2 hands a CONNECT stream over as (request, response) rather than (request, socket, head).
    const h2 = 'writeHead' in out
    const r = refusalResponse(ctx, req.headers.accept, rt, { refusal: REFUSALS.method_not_allowed, detail: 'CONNECT is never proxied' }, !h2, rules)
    ctx.logged = true
    if (h2) {
      out.writeHead(r.status, r.headers)
      out.end(r.body, () => log.write(ctx))
      return
    }
    writeOnSocket(out, r, true)
    log.write(ctx)
  }
}
