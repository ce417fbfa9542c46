/**
 * `portico serve` with worker processes, for the cluster tests: a config file in a scratch
 * directory, the primary started with `--workers N` and awaited until every worker serves,
 * plain loopback backends, requests on fresh connections (so the kernel spreads them over
 * the workers), and the JSON access log read back with its `worker` field.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after } from 'node:test'
import { freePort, portico, until, type PorticoProcess } from '../admin/serve-process.ts'

export { freePort, until }

/** A running cluster. */
export interface Cluster {
  readonly process: PorticoProcess
  /** `http://127.0.0.1:port` of the listener. */
  readonly origin: string
  /** `http://127.0.0.1:port` of the admin API. */
  readonly admin: string
  /** The access log file. */
  readonly log: string
  /** The config file (rewrite it, then reload). */
  readonly file: string
}

/**
 * Writes `yaml` (which must not set `listeners`, `admin` or `access_log`: they are added) to
 * `dir`, starts `portico serve -c FILE --workers N`, and resolves once the admin API is up,
 * which the primary starts after every worker listens.
 */
export async function startCluster(dir: string, yaml: string, workers = 2, name = 'portico.yaml'): Promise<Cluster> {
  const port = await freePort()
  const adminPort = await freePort()
  const file = join(dir, name)
  const log = join(dir, `${name}.access.log`)
  await writeFile(file, `listeners: [{ address: "127.0.0.1:${port}" }]\nadmin: { address: "127.0.0.1:${adminPort}" }\naccess_log: { path: ${JSON.stringify(log)} }\n${yaml}`)
  const p = portico(['serve', '-c', file, '--workers', String(workers)])
  await Promise.race([
    until('the admin API line', () => p.stderr().includes('admin API on'), 30_000),
    p.exited.then(({ code }) => { throw new Error(`portico serve exited with ${code}:\n${p.stderr()}`) }),
  ])
  return { process: p, origin: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}`, log, file }
}

/** A response read whole. */
export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

/** GET on a new connection (no keep-alive), so successive requests may land on any worker. */
export function getFresh(url: string, timeoutMs = 10_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs}ms`)))
    req.on('error', reject)
  })
}

/** Sends `n` GETs, each on a new connection, `concurrency` at a time; returns the answers in order. */
export async function many(url: string, n: number, concurrency = 8): Promise<Answer[]> {
  const out: Answer[] = new Array(n)
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++
      out[i] = await getFresh(url)
    }
  }))
  return out
}

/** GET `path` of the admin API as JSON. */
export async function adminGet<T>(c: Cluster, path: string): Promise<T> {
  const res = await fetch(`${c.admin}${path}`)
  return await res.json() as T
}

/** One access log line, as far as the tests read it. */
export interface LogLine {
  request_id: string
  path: string
  status: number
  endpoint: string | null
  attempts: number
  error: string | null
  cache: string | null
  worker?: number
}

/** The access log's lines, parsed; a line that is not whole JSON throws, naming its number. */
export async function readLog(c: Cluster): Promise<LogLine[]> {
  const text = await readFile(c.log, 'utf8').catch(() => '')
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  return lines.map((l, i) => {
    try {
      return JSON.parse(l) as LogLine
    } catch {
      throw new Error(`access log line ${i + 1} is not one JSON object: ${l.slice(0, 200)}`)
    }
  })
}

/** Waits until the access log has a line for each of `ids` (lines are written at most 100 ms after a response). */
export async function logLinesOf(c: Cluster, ids: string[]): Promise<LogLine[]> {
  let found: LogLine[] = []
  const deadline = Date.now() + 10_000
  for (;;) {
    const lines = await readLog(c)
    const want = new Set(ids)
    found = lines.filter((l) => want.has(l.request_id))
    if (found.length === ids.length || Date.now() > deadline) return found
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A loopback backend: `handle` answers; the server closes after the test file. */
export async function backend(handle: http.RequestListener): Promise<{ url: string; port: number; server: http.Server }> {
  const server = http.createServer(handle)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, port, server }
}
