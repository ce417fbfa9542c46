/**
 * A node:http client for gateway tests: one request on a new connection, recording the
 * response head, body, trailers, interim responses, and how the exchange ended.
 */
import http from 'node:http'
import type { Readable } from 'node:stream'

/** What one request saw. */
export interface Reply {
  /** Final status; 0 when no response head arrived. */
  status: number
  headers: http.IncomingHttpHeaders
  trailers: http.IncomingHttpHeaders
  /** Interim (1xx) responses, in order. */
  informational: Array<{ status: number; headers: http.IncomingHttpHeaders }>
  body: Buffer
  /** Set when the request or the body read failed (error code, or 'aborted'); unset for a clean end. */
  error?: string
  /** From writing the request to the response head, in ms. */
  headMs: number
  /** From writing the request to the end of the exchange, in ms. */
  totalMs: number
  /** The body parsed as JSON. */
  json<T = Record<string, unknown>>(): T
}

/** Options of {@link send}. */
export interface SendOptions {
  method?: string
  path?: string
  headers?: http.OutgoingHttpHeaders | string[]
  /** Request body: bytes (sent with Content-Length unless headers say otherwise) or a stream (chunked). */
  body?: string | Buffer | Readable
  /** Keep only the byte count of the body, not the bytes (for large transfers). */
  discardBody?: boolean
  /** Give up after this many ms (the request is destroyed, error 'client_timeout'). Default 10000. */
  timeoutMs?: number
  agent?: http.Agent | false
}

/** Sends one request to 127.0.0.1:`port` and resolves with what came back; never rejects. */
export function send(port: number, opts: SendOptions = {}): Promise<Reply & { bytes: number }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let bytes = 0
    const out: Reply & { bytes: number } = {
      status: 0, headers: {}, trailers: {}, informational: [], body: Buffer.alloc(0), headMs: -1, totalMs: -1, bytes: 0,
      json<T>(): T { return JSON.parse(out.body.toString('utf8')) as T },
    }
    const t0 = performance.now()
    let done = false
    const finish = (error?: string): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      out.totalMs = performance.now() - t0
      out.body = Buffer.concat(chunks)
      out.bytes = bytes
      if (error !== undefined) out.error = error
      resolve(out)
    }
    const req = http.request({
      host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/',
      headers: opts.headers, agent: opts.agent ?? false,
    }, (res) => {
      out.headMs = performance.now() - t0
      out.status = res.statusCode ?? 0
      out.headers = res.headers
      res.on('data', (c: Buffer) => {
        bytes += c.length
        if (!opts.discardBody) chunks.push(c)
      })
      res.on('end', () => {
        out.trailers = res.trailers
        finish()
      })
      res.on('aborted', () => finish('aborted'))
      res.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message))
      res.on('close', () => { if (!res.complete) finish('aborted') })
    })
    req.on('information', (info) => out.informational.push({ status: info.statusCode, headers: info.headers }))
    req.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message))
    const timer = setTimeout(() => {
      finish('client_timeout')
      req.destroy()
    }, opts.timeoutMs ?? 10_000)
    const body = opts.body
    if (body === undefined) req.end()
    else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body)
    else body.pipe(req)
  })
}

/** Header value as one string ('' when absent). */
export function header(reply: Pick<Reply, 'headers'>, name: string): string {
  const v = reply.headers[name.toLowerCase()]
  return Array.isArray(v) ? v.join(', ') : v ?? ''
}
