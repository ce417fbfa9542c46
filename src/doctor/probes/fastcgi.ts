/**
 * FastCGI probe: speaks the FastCGI protocol (fastcgi-spec §3-§5) to a `fastcgi_pass`
 * endpoint: a request for the configured ping path (php-fpm `ping.path`), or else an
 * FCGI_GET_VALUES management record every FastCGI server answers.
 */
import net from 'node:net'
import type { Finding } from '../finding.ts'
import { fixes, hostPort, type ProbeOutput, type Target } from './target.ts'

const VERSION = 1
const BEGIN_REQUEST = 1
const END_REQUEST = 3
const PARAMS = 4
const STDIN = 5
const STDOUT = 6
const GET_VALUES = 9
const GET_VALUES_RESULT = 10

/** Raw results of the FastCGI probe. */
export interface FastcgiResult {
  /** What was sent: a request for `path`, or FCGI_GET_VALUES. */
  request: { kind: 'request'; path: string } | { kind: 'get_values' }
  outcome: 'ok' | 'not_fastcgi' | 'closed' | 'timeout' | 'refused' | 'error'
  /** CGI `Status:` of the answer to a request (200 when absent). */
  status?: number
  /** Time to the first answer byte, ms from the write. */
  ms?: number
  /** First bytes received (at most 16), hex, when they were not FastCGI. */
  firstBytesHex?: string
  /** The first bytes looked like an HTTP status line. */
  http?: boolean
  error?: string
}

function record(type: number, requestId: number, content: Buffer): Buffer {
  const pad = (8 - (content.length % 8)) % 8
  const h = Buffer.alloc(8)
  h.writeUInt8(VERSION, 0)
  h.writeUInt8(type, 1)
  h.writeUInt16BE(requestId, 2)
  h.writeUInt16BE(content.length, 4)
  h.writeUInt8(pad, 6)
  return Buffer.concat([h, content, Buffer.alloc(pad)])
}

function nameValues(pairs: [string, string][]): Buffer {
  const len = (n: number) => (n < 128 ? Buffer.from([n]) : (() => { const b = Buffer.alloc(4); b.writeUInt32BE((n | 0x80000000) >>> 0); return b })())
  return Buffer.concat(pairs.flatMap(([k, v]) => [len(Buffer.byteLength(k)), len(Buffer.byteLength(v)), Buffer.from(k), Buffer.from(v)]))
}

/** The bytes of one FastCGI responder request for `path` with no body. */
export function fastcgiRequest(path: string): Buffer {
  const begin = Buffer.alloc(8)
  begin.writeUInt16BE(1, 0) // FCGI_RESPONDER, flags 0: the server closes after answering
  const params = nameValues([
    ['SCRIPT_FILENAME', path], ['SCRIPT_NAME', path], ['REQUEST_URI', path], ['DOCUMENT_URI', path],
    ['REQUEST_METHOD', 'GET'], ['QUERY_STRING', ''], ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['GATEWAY_INTERFACE', 'CGI/1.1'], ['CONTENT_LENGTH', '0'], ['SERVER_SOFTWARE', 'portico-doctor'],
  ])
  return Buffer.concat([record(BEGIN_REQUEST, 1, begin), record(PARAMS, 1, params), record(PARAMS, 1, Buffer.alloc(0)), record(STDIN, 1, Buffer.alloc(0))])
}

/** The bytes of an FCGI_GET_VALUES management record (request id 0). */
export function fastcgiGetValues(): Buffer {
  return record(GET_VALUES, 0, nameValues([['FCGI_MAX_CONNS', ''], ['FCGI_MAX_REQS', ''], ['FCGI_MPXS_CONNS', '']]))
}

/**
 * Sends the request and reads records until FCGI_END_REQUEST (or GET_VALUES_RESULT),
 * bounded by `timeoutMs`. Never throws.
 */
export function fastcgiExchange(address: string, port: number, request: FastcgiResult['request'], timeoutMs: number): Promise<FastcgiResult> {
  return new Promise((resolve) => {
    const socket = address.startsWith('unix:') ? net.connect({ path: address.slice(5) }) : net.connect({ host: address, port })
    let buf = Buffer.alloc(0)
    let stdout = Buffer.alloc(0)
    let sentAt = 0
    let firstAt = 0
    let done = false
    const finish = (r: Omit<FastcgiResult, 'request'>) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ request, ...r, ...(firstAt ? { ms: firstAt - sentAt } : {}) })
    }
    const timer = setTimeout(() => finish({ outcome: 'timeout', error: `no FastCGI answer within ${timeoutMs}ms` }), timeoutMs)
    socket.once('connect', () => {
      sentAt = performance.now()
      socket.write(request.kind === 'request' ? fastcgiRequest(request.path) : fastcgiGetValues())
    })
    socket.on('data', (chunk: Buffer) => {
      if (!firstAt) firstAt = performance.now()
      buf = Buffer.concat([buf, chunk])
      if (buf[0] !== VERSION || buf.length >= 2 && (buf[1] === 0 || buf[1] > 11)) {
        const text = buf.subarray(0, 16).toString('latin1')
        return finish({ outcome: 'not_fastcgi', firstBytesHex: buf.subarray(0, 16).toString('hex'), http: text.startsWith('HTTP/'), error: 'the answer is not FastCGI' })
      }
      while (buf.length >= 8) {
        const type = buf[1]
        const len = buf.readUInt16BE(4)
        const total = 8 + len + buf[6]
        if (buf.length < total) break
        const content = buf.subarray(8, 8 + len)
        buf = buf.subarray(total)
        if (type === STDOUT) stdout = Buffer.concat([stdout, content])
        if (type === GET_VALUES_RESULT) return finish({ outcome: 'ok' })
        if (type === END_REQUEST) {
          const m = /^Status:\s*(\d{3})/im.exec(stdout.toString('latin1').split(/\r?\n\r?\n/)[0])
          return finish({ outcome: 'ok', status: m ? Number(m[1]) : 200 })
        }
      }
    })
    socket.once('end', () => finish({ outcome: 'closed', error: 'the server closed the connection without a complete FastCGI answer' }))
    socket.once('error', (err: NodeJS.ErrnoException) => finish({ outcome: err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'refused' : 'error', error: err.code ?? err.message }))
  })
}

/**
 * Probes a `fastcgi_pass` endpoint that accepted a connection. Findings: `fastcgi.not_fastcgi`
 * (http_protocol_error: e.g. an HTTP server behind fastcgi_pass), `fastcgi.closed`
 * (connection_terminated), `fastcgi.timeout` (http_response_timeout), `fastcgi.status`
 * (the ping path answers 5xx), `fastcgi.ok` (info).
 */
export async function probeFastcgi(target: Target, address: string, opts: { timeoutMs: number }): Promise<ProbeOutput<FastcgiResult>> {
  const request: FastcgiResult['request'] = target.fastcgiPing ? { kind: 'request', path: target.fastcgiPing } : { kind: 'get_values' }
  const r = await fastcgiExchange(address, target.port, request, opts.timeoutMs)
  const what = request.kind === 'request' ? `FastCGI request for ${request.path}` : 'FCGI_GET_VALUES'
  const evidence = [`${what} to ${hostPort(target.host, target.port)}: ${r.outcome}${r.status ? ` (Status ${r.status})` : ''}${r.ms !== undefined ? ` after ${r.ms.toFixed(1)}ms` : ''}${r.error ? ` (${r.error})` : ''}${r.firstBytesHex ? `, first bytes 0x${r.firstBytesHex}` : ''}`]
  const base = { target: target.url, evidence }
  const where = target.location ? `the ${target.location}` : 'its location'
  switch (r.outcome) {
    case 'ok':
      if (r.status !== undefined && r.status >= 500) return { result: r, findings: [{ ...base, id: 'fastcgi.status', severity: 'error', cause: null, likelihood: 0.6, title: `The FastCGI server answers ${r.status} for ${target.fastcgiPing}`, fix: 'The FastCGI application itself fails: read its error log (php-fpm: the pool\'s `slowlog` and `catch_workers_output`).' }] }
      return { result: r, findings: [{ ...base, id: 'fastcgi.ok', severity: 'info', cause: null, likelihood: 0, title: `${hostPort(target.host, target.port)} speaks FastCGI${r.status ? ` (${target.fastcgiPing} answers ${r.status})` : ''}`, fix: '' }] }
    case 'not_fastcgi':
      return { result: r, findings: [{ ...base, id: 'fastcgi.not_fastcgi', severity: 'critical', cause: 'http_protocol_error', likelihood: 0.9, title: `${hostPort(target.host, target.port)} does not speak FastCGI${r.http ? ' (it answers HTTP)' : ''}`, fix: r.http ? `The port is an HTTP server: use \`proxy_pass http://${hostPort(target.host, target.port)};\` instead of \`fastcgi_pass\` in ${where}, or point \`fastcgi_pass\` at the FastCGI port (php-fpm's \`listen =\`).` : `Point \`fastcgi_pass\` in ${where} at the FastCGI port (php-fpm's \`listen =\`).` }] }
    case 'closed':
      return { result: r, findings: [{ ...base, id: 'fastcgi.closed', severity: 'critical', cause: 'connection_terminated', likelihood: 0.8, title: `The FastCGI server closed the connection without answering`, fix: 'Check the FastCGI server\'s log for crashed or killed workers (php-fpm: `pm.max_children` reached, `request_terminate_timeout`).' }] }
    case 'timeout':
      return { result: r, findings: [{ ...base, id: 'fastcgi.timeout', severity: 'critical', cause: 'http_response_timeout', likelihood: 0.85, title: `The FastCGI server accepted but did not answer within ${opts.timeoutMs}ms`, fix: `Its workers are busy or stuck (php-fpm: \`pm.max_children\`, the slowlog). ${fixes.responseHeaderTimeout(target, opts.timeoutMs, false)}` }] }
    default:
      return { result: r, findings: [{ ...base, id: 'fastcgi.refused', severity: 'critical', cause: 'connection_refused', likelihood: 0.8, title: `The FastCGI server refused the probe's connection`, fix: fixes.refused(target) }] }
  }
}
