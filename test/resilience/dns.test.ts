/**
 * Endpoints given by host name, end to end on loopback: a local DNS server answers the
 * name, backends listen on 127.0.0.2 and 127.0.0.3 on one port, and the record changes,
 * fails or never exists while requests flow through the gateway.
 */
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { mock, test } from 'node:test'
import type { ConfigInput } from '../../src/config/schema.ts'
import { logger } from '../../src/lib/logger.ts'
import { send, type Reply } from '../helpers/client.ts'
import { expectExchange } from '../helpers/expect.ts'
import { oneUpstream, testEnv, waitFor, type TestGateway } from '../helpers/gateway.ts'
import { startDnsServer } from '../doctor/probes/dns-server.ts'

const env = testEnv()

type Table = Parameters<typeof startDnsServer>[0] & object

/** A backend answering its name (after `?delay=ms` when asked), counting open connections. */
interface Backend {
  readonly name: string
  readonly port: number
  /** Connections open now. */
  connections(): number
}

async function backend(name: string, host: string, port: number): Promise<Backend> {
  const sockets = new Set<unknown>()
  const server = await env.server((req, res) => {
    const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0)
    setTimeout(() => res.end(name), delay)
  }, host, port)
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  return { name, port: (server.address() as AddressInfo).port, connections: () => sockets.size }
}

/** Backend A on 127.0.0.2 and B on 127.0.0.3, on the same port: only the address tells them apart. */
async function twoBackends(): Promise<{ a: Backend; b: Backend; port: number }> {
  for (let i = 0; ; i++) {
    const a = await backend('A', '127.0.0.2', 0)
    try {
      const b = await backend('B', '127.0.0.3', a.port)
      return { a, b, port: a.port }
    } catch (err) {
      if (i >= 4) throw err
    }
  }
}

type UpstreamInput = ConfigInput['upstreams'][string]

/**
 * Backends A and B, a loopback DNS server answering from `table` (changed in place by the
 * test), and a gateway whose upstream `default` is `http://svc.test:<port>` asking that server.
 */
async function behindName(table: Table, dns: Omit<NonNullable<UpstreamInput['dns']>, 'resolvers'>, upstream: Partial<UpstreamInput> = {}, top: Partial<ConfigInput> = {}) {
  const backends = await twoBackends()
  const server = await startDnsServer(table)
  env.defer(() => server.close())
  const resolvers = [`127.0.0.1:${server.port}`]
  const gw = await env.gateway(oneUpstream([`http://svc.test:${backends.port}`], { ...upstream, dns: { ...dns, resolvers } }, top))
  return { ...backends, gw }
}

/** `GET /upstreams` of the gateway's admin API, the upstream `default`. */
async function upstreamView(gw: TestGateway): Promise<{ endpoints: Array<Record<string, unknown>>; names: Array<Record<string, unknown>> }> {
  const res = await fetch(`http://127.0.0.1:${gw.gateway.admin?.address?.port}/upstreams`)
  const body = await res.json() as { upstreams: Array<{ name: string; endpoints: Array<Record<string, unknown>>; names: Array<Record<string, unknown>> }> }
  const up = body.upstreams.find((u) => u.name === 'default')
  assert.ok(up)
  return up
}

/** Polls `GET /upstreams` until `check` accepts the view. */
async function viewWhen(gw: TestGateway, what: string, check: (v: Awaited<ReturnType<typeof upstreamView>>) => boolean, waitMs = 3000): ReturnType<typeof upstreamView> {
  const deadline = performance.now() + waitMs
  for (;;) {
    const v = await upstreamView(gw)
    if (check(v)) return v
    if (performance.now() > deadline) throw new Error(`timed out after ${waitMs}ms waiting for ${what}; last view ${JSON.stringify(v)}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The process log calls about `name` (mocked `logger[level]`): their field objects, in order. */
function logged(calls: ReturnType<typeof mock.method>['mock']['calls'], name: string): Array<Record<string, unknown>> {
  return calls.map((c) => c.arguments[0] as Record<string, unknown>).filter((f) => typeof f === 'object' && f !== null && f.name === name)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('a changed record moves every request to the new address within the TTL bound, none fails, the change is logged once', async () => {
  const info = mock.method(logger, 'info')
  env.defer(() => info.mock.restore())
  const table: Table = { 'svc.test': { a: ['127.0.0.2'], ttl: 1 } }
  const { a, port, gw } = await behindName(table, { min_ttl: '1s' })

  const first = await send(gw.port)
  await expectExchange(gw, first, { status: 200, error: null, endpoint: `127.0.0.2:${port}`, attempts: 1 })
  assert.equal(first.body.toString(), 'A')

  // Steady load from three clients, and one slow request held by A across the change.
  const results: Array<{ at: number; reply: Reply }> = []
  let running = true
  const client = async (): Promise<void> => {
    while (running) {
      const at = performance.now()
      results.push({ at, reply: await send(gw.port) })
    }
  }
  const clients = [client(), client(), client()]
  await sleep(150)
  // A POST with a body is never retried, so it can only succeed on the connection it started on.
  const slow = send(gw.port, { method: 'POST', path: '/?delay=1200', body: 'held', headers: { 'x-request-id': 'slow-post' } })
  await sleep(100)
  const changedAt = performance.now()
  table['svc.test'] = { a: ['127.0.0.3'], ttl: 1 }
  // TTL 1 s within [min_ttl 1 s, max_ttl 5 m]: re-resolved at most 1 s after the change, plus a resolution's time.
  const bound = 1000 + 400
  await sleep(bound + 400)
  running = false
  await Promise.all(clients)

  const failed = results.filter((r) => r.reply.status !== 200 || r.reply.error !== undefined)
  assert.deepEqual(failed.map((r) => `${r.reply.status} ${r.reply.error ?? ''} ${r.reply.body}`), [], 'no request failed during the change')
  const slowReply = await slow
  assert.equal(slowReply.status, 200, 'the request in flight on the old address finished')
  assert.equal(slowReply.body.toString(), 'A')
  await expectExchange(gw, slowReply, { status: 200, error: null, endpoint: `127.0.0.2:${port}`, attempts: 1 })
  await gw.waitForRecords(results.length + 2)
  assert.deepEqual(gw.records.filter((r) => r.attempts !== 1 || r.error !== null).map((r) => `${r.endpoint} ${r.attempts} ${r.error}`), [], 'no try failed, so none was retried')
  const firstB = results.find((r) => r.reply.body.toString() === 'B')
  assert.ok(firstB, 'B answered')
  assert.ok(firstB.at - changedAt <= bound, `first request to B started ${(firstB.at - changedAt).toFixed(0)}ms after the change`)
  const late = results.filter((r) => r.at >= changedAt + bound)
  assert.ok(late.length >= 3, `${late.length} requests after the bound`)
  assert.deepEqual([...new Set(late.map((r) => r.reply.body.toString()))], ['B'], 'every request after the bound went to B')
  assert.ok(results.some((r) => r.at < changedAt && r.reply.body.toString() === 'A'), 'A served before the change')

  assert.deepEqual(gw.gateway.runtime.pools.get('default')?.endpoints.map((e) => e.label), [`127.0.0.3:${port}`])
  // The old address's connections close once the slow request is over (not at the 4 s keep-alive timeout).
  await waitFor('connections to A closed', () => (a.connections() === 0 ? true : undefined), 1000)

  const changes = logged(info.mock.calls, 'svc.test')
  assert.deepEqual(changes, [
    { upstream: 'default', name: 'svc.test', addresses_before: [], addresses: ['127.0.0.2'], ttl_ms: 1000 },
    { upstream: 'default', name: 'svc.test', addresses_before: ['127.0.0.2'], addresses: ['127.0.0.3'], ttl_ms: 1000 },
  ], 'the first answer and the change, each logged once')
  const line = info.mock.calls.find((c) => c.arguments[0] === changes[1])?.arguments[1]
  assert.match(String(line), /svc\.test resolves to 127\.0\.0\.3 \(was 127\.0\.0\.2\), ttl 1000ms/)
})

test('a name that stops resolving keeps its last good address for the grace period, with dns_error in /upstreams; then 502 dns_error', async () => {
  const warn = mock.method(logger, 'warn')
  env.defer(() => warn.mock.restore())
  const table: Table = { 'svc.test': { a: ['127.0.0.2'], ttl: 0 } }
  const { a, port, gw } = await behindName(table, { min_ttl: '100ms', max_ttl: '1s', grace: '1500ms' }, { retries: { attempts: 1 } }, { admin: { address: '127.0.0.1:0' } })
  await expectExchange(gw, await send(gw.port), { status: 200, error: null, endpoint: `127.0.0.2:${port}` })
  // next_resolution is null while a resolution runs, which with TTL 0 is often.
  const healthy = await viewWhen(gw, 'a next resolution time', (v) => v.names[0]?.next_resolution !== null)
  assert.equal(healthy.names[0].reason, null)
  const interval = Date.parse(String(healthy.names[0].next_resolution)) - Date.parse(String(healthy.names[0].resolved_at))
  assert.ok(interval >= 100 && interval < 200, `next resolution ${interval}ms after the last: TTL 0 raised to min_ttl`)

  table['svc.test'] = 'servfail'
  const failing = await viewWhen(gw, 'dns_error in /upstreams', (v) => v.names[0]?.reason === 'dns_error')
  assert.deepEqual(failing.names[0].addresses, ['127.0.0.2'], 'last good address kept')
  assert.equal((failing.names[0].last_error as { type: string }).type, 'dns_error')
  assert.ok(failing.names[0].grace_until !== null, 'grace end shown')
  assert.deepEqual(failing.endpoints.map((e) => [e.address, e.resolved_from, e.available]), [[`127.0.0.2:${port}`, 'svc.test', true]])

  // Still served by the last good address while the name fails.
  const during = await send(gw.port)
  await expectExchange(gw, during, { status: 200, error: null, endpoint: `127.0.0.2:${port}` })
  assert.equal(during.body.toString(), a.name)

  const dropped = await viewWhen(gw, 'addresses dropped after the grace period', (v) => v.endpoints.length === 0, 3000)
  assert.equal(dropped.names[0].reason, 'dns_error')
  assert.equal(dropped.names[0].grace_until, null)
  const after = await send(gw.port, { headers: { 'x-request-id': 'after-grace' } })
  const r = await expectExchange(gw, after, { status: 502, error: 'dns_error', endpoint: `svc.test:${port}`, attempts: 1 })
  assert.match(String(r.details), /svc\.test/)

  const lines = logged(warn.mock.calls, 'svc.test')
  assert.equal(lines.filter((f) => f.reason === 'dns_error' && !('addresses_before' in f)).length, 1, 'the failure logged once')
  assert.deepEqual(lines.filter((f) => 'addresses_before' in f).map((f) => [f.addresses_before, f.addresses]), [[['127.0.0.2'], []]], 'the drop logged once')
})

test('a name that never resolves: the gateway starts, requests get 502 dns_error until the name resolves', async () => {
  const table: Table = {}
  const { port, gw } = await behindName(table, { min_ttl: '100ms' }, { retries: { attempts: 1 } })

  for (const id of ['nx-1', 'nx-2']) {
    const reply = await send(gw.port, { headers: { 'x-request-id': id } })
    const r = await expectExchange(gw, reply, { status: 502, error: 'dns_error', endpoint: `svc.test:${port}`, attempts: 1 })
    assert.match(String(r.details), /ENOTFOUND/)
    assert.equal(r.upstream_status, null)
  }

  table['svc.test'] = { a: ['127.0.0.3'], ttl: 60 }
  await waitFor('the name to resolve', () => (gw.gateway.runtime.pools.get('default')?.endpoints.length === 1 ? true : undefined), 2000)
  const ok = await send(gw.port)
  await expectExchange(gw, ok, { status: 200, error: null, endpoint: `127.0.0.3:${port}` })
  assert.equal(ok.body.toString(), 'B')
})
