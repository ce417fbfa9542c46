/**
 * Gateway test harness: starts gateways and lab upstreams on loopback port 0, keeps their
 * access log in memory, and closes everything after each test so the runner can exit.
 */
import http from 'node:http'
import { after, afterEach } from 'node:test'
import { configSchema, type Config, type ConfigInput } from '../../src/config/schema.ts'
import { startLab, type FaultMode, type LabOptions, type LabServer } from '../../src/lab/index.ts'
import { memoryAccessLog, type AccessLogRecord } from '../../src/observe/access-log.ts'
import { Gateway } from '../../src/server/gateway.ts'
import { AdminServer } from '../../src/admin/server.ts'

/** Small upstream timeouts for fault tests: failures show up in a few hundred ms. */
export const FAST_TIMEOUTS = { connect: '300ms', response_header: '300ms', idle: '300ms' } as const

type UpstreamInput = ConfigInput['upstreams'][string]
type EndpointInput = UpstreamInput['endpoints'][number]

/** A running gateway with its in-memory access log. */
export interface TestGateway {
  readonly gateway: Gateway
  readonly config: Config
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  /** Access log records, in the order requests ended. */
  readonly records: AccessLogRecord[]
  /** The record of `requestId`, waiting up to `waitMs` for it (it is written when the downstream response closes). */
  record(requestId: string, waitMs?: number): Promise<AccessLogRecord>
  /** Waits until at least `count` records were written. */
  waitForRecords(count: number, waitMs?: number): Promise<AccessLogRecord[]>
  /** Waits until no endpoint of any upstream has a request in flight (the upstream exchanges ended). */
  settled(waitMs?: number): Promise<void>
}

/**
 * A config with one listener on 127.0.0.1:0, one catch-all route `default` to the upstream
 * `default` holding `endpoints`, and the given upstream and top-level overrides.
 */
export function oneUpstream(endpoints: EndpointInput[], upstream: Partial<UpstreamInput> = {}, top: Partial<ConfigInput> = {}): ConfigInput {
  return {
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'default', upstream: 'default' }],
    upstreams: { default: { endpoints, ...upstream } },
    ...top,
  }
}

/** Polls `check` every 5 ms until it returns a value or `waitMs` ms pass. */
export async function waitFor<T>(what: string, check: () => T | undefined, waitMs = 3000): Promise<T> {
  const deadline = performance.now() + waitMs
  for (;;) {
    const v = check()
    if (v !== undefined) return v
    if (performance.now() > deadline) throw new Error(`timed out after ${waitMs}ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/**
 * Resources of the tests of one file, closed after each test (`scope` 'test') or once
 * after the file's tests (`scope` 'file', for a gateway shared by read-only tests).
 * Call once at module level.
 *
 * @example
 *   const env = testEnv()
 *   test('x', async () => { const up = await env.lab('ok'); const gw = await env.gateway(oneUpstream([up.url])) })
 */
export function testEnv(scope: 'test' | 'file' = 'test') {
  let cleanups: Array<() => Promise<void>> = []
  ;(scope === 'test' ? afterEach : after)(async () => {
    const fns = cleanups.reverse()
    cleanups = []
    for (const fn of fns) await fn()
  })
  return {
    /** Starts a lab upstream, closed after the test. */
    async lab(mode: FaultMode, options?: LabOptions): Promise<LabServer> {
      const l = await startLab(mode, options)
      cleanups.push(() => l.close())
      return l
    },
    /** Starts a gateway for `input` (validated with schema defaults), stopped after the test. */
    async gateway(input: ConfigInput): Promise<TestGateway> {
      const config = configSchema.parse(input)
      const log = memoryAccessLog()
      const gateway = new Gateway(config, { accessLog: log, admin: (g) => new AdminServer(g) })
      await gateway.start()
      cleanups.push(() => gateway.stop(0))
      const port = gateway.listeners[0].address.port
      const records = log.records
      return {
        gateway, config, port, records,
        origin: `http://127.0.0.1:${port}`,
        record: (id, waitMs) => waitFor(`access log record ${id}`, () => records.find((r) => r.request_id === id), waitMs),
        waitForRecords: (count, waitMs) => waitFor(`${count} access log records`, () => (records.length >= count ? records : undefined), waitMs),
        async settled(waitMs) {
          const endpoints = [...gateway.runtime.pools.values()].flatMap((p) => p.endpoints)
          await waitFor('upstream exchanges to end', () => (endpoints.every((e) => e.inFlight === 0) ? true : undefined), waitMs)
        },
      }
    },
    /** Starts a node:http upstream with `handler` on 127.0.0.1:0, closed after the test; returns its URL. */
    async upstream(handler: http.RequestListener): Promise<string> {
      const server = await this.server(handler)
      return `http://127.0.0.1:${(server.address() as { port: number }).port}`
    },
    /**
     * Starts a node:http server with `handler` on `host`:`port` (a loopback address), closed after the test.
     * @throws the listen error (e.g. `EADDRINUSE` for a port taken on that address)
     */
    async server(handler: http.RequestListener, host = '127.0.0.1', port = 0): Promise<http.Server> {
      const server = http.createServer(handler)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => resolve())
      })
      cleanups.push(() => new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }))
      return server
    },
    /** Runs `fn` after the test, before the resources made earlier are closed. */
    defer(fn: () => Promise<void> | void): void {
      cleanups.push(async () => { await fn() })
    },
  }
}

/** What a recording upstream saw of one request; the body is read as latin1. */
export interface SeenRequest { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }

/** An upstream of `env` that records each request once its body is read and answers 200 "ok". */
export async function recordingUpstream(env: ReturnType<typeof testEnv>): Promise<{ url: string; seen: SeenRequest[] }> {
  const seen: SeenRequest[] = []
  const url = await env.upstream((req, res) => {
    let body = ''
    req.setEncoding('latin1')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      res.end('ok')
    })
  })
  return { url, seen }
}
