/**
 * The healthy upstream ('ok' mode): a plain node:http application with routes that let
 * tests see forwarded headers, echo and stream bodies, and exercise trailers, 1xx and delays.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { LabContext } from './context.ts'

/** Size of each chunk `/bytes/N` writes, in bytes. */
export const CHUNK_BYTES = 64 * 1024
const CHUNK = Buffer.alloc(CHUNK_BYTES, 'x')

/** A request handler of node:http. */
export type Handler = (req: IncomingMessage, res: ServerResponse) => void

/**
 * Routes of the healthy upstream:
 * - `POST|PUT /echo`: the request body streamed back unchanged (same Content-Length, or chunked);
 * - `GET /bytes/N`: N bytes in 64 KiB chunks with Content-Length, written as fast as the reader reads;
 * - `GET /delay/MS`: the JSON answer after MS milliseconds;
 * - `GET /status/CODE`: that status (100–199 and codes outside 200–599 are refused with 400);
 * - `GET /trailers`: a chunked body followed by the trailer `x-checksum` (sha256 hex of the body);
 * - `GET /early-hints`: a 103 Early Hints (RFC 8297) with a `Link` header, then 200;
 * - `GET /healthz`: 200 `ok`;
 * - anything else: 200 JSON `{ server, method, url, headers }`.
 * Every response carries `X-Lab-Server: <name>`.
 *
 * @param name the instance name reported in bodies and `X-Lab-Server`
 * @param context timers for `/delay` are tracked there so close() clears them
 */
export function okHandler(name: string, context: LabContext): Handler {
  return (req, res) => {
    res.setHeader('x-lab-server', name)
    const path = (req.url ?? '/').split('?')[0]
    const method = req.method ?? 'GET'
    const [, first, arg] = path.split('/')

    if (first === 'echo' && (method === 'POST' || method === 'PUT')) return echo(req, res)
    if (first === 'bytes' && arg !== undefined) return bytes(req, res, Number(arg))
    if (first === 'delay' && arg !== undefined) {
      const ms = Number(arg)
      if (!Number.isInteger(ms) || ms < 0) return text(res, 400, `invalid delay "${arg}": expected whole milliseconds\n`)
      const t = context.after(ms, () => describe(name, req, res))
      res.once('close', () => context.cancel(t))
      return
    }
    if (first === 'status' && arg !== undefined) {
      const code = Number(arg)
      if (!Number.isInteger(code) || code < 200 || code > 599) return text(res, 400, `invalid status "${arg}": expected 200-599\n`)
      req.resume()
      return text(res, code, `status ${code}\n`)
    }
    if (path === '/trailers') return trailers(res)
    if (path === '/early-hints') {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
      return describe(name, req, res)
    }
    if (path === '/healthz') return text(res, 200, 'ok\n')
    describe(name, req, res)
  }
}

/** Answers 200 with `{ server, method, url, headers }`, after draining any request body. */
export function describe(name: string, req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  const body = JSON.stringify({ server: name, method: req.method, url: req.url, headers: req.headers })
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

function echo(req: IncomingMessage, res: ServerResponse): void {
  const headers: Record<string, string> = { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' }
  // Same framing as the request: a known length is kept, otherwise Node chunks the reply.
  if (req.headers['content-length'] !== undefined) headers['content-length'] = req.headers['content-length']
  res.writeHead(200, headers)
  req.pipe(res)
}

function bytes(req: IncomingMessage, res: ServerResponse, total: number): void {
  if (!Number.isSafeInteger(total) || total < 0) return text(res, 400, 'invalid byte count: expected a whole number\n')
  req.resume()
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
  if (req.method === 'HEAD') return void res.end()
  let left = total
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK_BYTES)
      left -= n
      if (!res.write(n === CHUNK_BYTES ? CHUNK : CHUNK.subarray(0, n))) return void res.once('drain', pump)
    }
    res.end()
  }
  res.once('close', () => { left = 0 })
  pump()
}

function trailers(res: ServerResponse): void {
  const parts = ['first chunk\n', 'second chunk\n', 'third chunk\n']
  const hash = createHash('sha256')
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', trailer: 'x-checksum' })
  for (const p of parts) {
    hash.update(p)
    res.write(p)
  }
  res.addTrailers({ 'x-checksum': hash.digest('hex') })
  res.end()
}
