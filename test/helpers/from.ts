/**
 * Requests from a chosen loopback address (127.0.0.0/8 is all loopback on Linux), so tests
 * of access rules, rate limits and client addresses can be several clients at once.
 */
import http from 'node:http'

/** What came back. */
export interface FromReply {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

/** Options of {@link sendFrom}. */
export interface FromOptions {
  /** Local address to connect from, e.g. `127.0.0.2`. Default `127.0.0.1`. */
  from?: string
  method?: string
  path?: string
  headers?: http.OutgoingHttpHeaders
  /** A keep-alive agent to reuse connections (its `localAddress` wins); default a new connection. */
  agent?: http.Agent
}

/** Sends one request to 127.0.0.1:`port`; rejects on a connection error or after 10 s. */
export function sendFrom(port: number, opts: FromOptions = {}): Promise<FromReply> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: opts.headers,
      agent: opts.agent ?? false, localAddress: opts.agent ? undefined : opts.from ?? '127.0.0.1', timeout: 10_000,
    }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('request timed out after 10 s')))
    req.on('error', reject)
    req.end()
  })
}

/** The value of `name{labels}` in a Prometheus text exposition, or 0 when the series is absent. */
export function metricValue(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue
    const close = line.indexOf('} ')
    const have = line.slice(name.length + 1, close)
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) return Number(line.slice(close + 2))
  }
  return 0
}
