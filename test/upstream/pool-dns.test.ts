/**
 * Pools with endpoints given by host name, resolved through a loopback DNS server: one
 * endpoint per address that keeps the name, health checking that follows the addresses,
 * the first answer awaited by requests, and IP literals and localhost left as they were.
 */
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import { configSchema } from '../../src/config/schema.ts'
import type { NameResolver } from '../../src/upstream/dns.ts'
import { UpstreamPool } from '../../src/upstream/pool.ts'
import { oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'
import { startDnsServer } from '../doctor/probes/dns-server.ts'
import { watchedPool } from './health-helpers.ts'

const env = testEnv()

type Table = Parameters<typeof startDnsServer>[0] & object

/** A loopback DNS server answering from `table` (changed in place by the test). */
async function dnsServer(table: Table) {
  const server = await startDnsServer(table)
  env.defer(() => server.close())
  return server
}

/** An HTTP server on `host` that records the Host header and User-Agent of each request. */
async function recorder(host: string, port = 0): Promise<{ port: number; seen: Array<{ host?: string; agent?: string }> }> {
  const seen: Array<{ host?: string; agent?: string }> = []
  const server = await env.server((req, res) => {
    seen.push({ host: req.headers.host, agent: req.headers['user-agent'] })
    res.end()
  }, host, port)
  return { port: (server.address() as AddressInfo).port, seen }
}

/** Fast checks, no jitter; outlier detection ejects at the first failed try. */
const FAST_CHECKS = { interval: '50ms', timeout: '200ms', jitter: '0ms' } as const

describe('pools with host names', () => {
  test('IP literals and localhost are endpoints at once, and the resolver is never made nor asked', async () => {
    let made = 0
    const resolverFactory = (): NameResolver => {
      made++
      throw new Error('no resolver for IP literals')
    }
    const config = configSchema.parse(oneUpstream(['http://127.0.0.1:1', 'http://[::1]:2', 'http://localhost:3'])).upstreams.default
    const pool = new UpstreamPool('default', config, { resolverFactory })
    env.defer(() => pool.close())
    assert.deepEqual(pool.endpoints.map((e) => [e.label, e.address, e.authority, e.resolvedFrom]), [
      ['127.0.0.1:1', '127.0.0.1', '127.0.0.1:1', null],
      ['[::1]:2', '::1', '[::1]:2', null],
      ['localhost:3', 'localhost', 'localhost:3', null],
    ])
    assert.deepEqual(pool.names(), [])
    assert.equal(made, 0)
  })

  test('every address of a name is an endpoint at that address keeping the name for Host, SNI and weight', async () => {
    const dns = await dnsServer({ 'svc.test': { a: ['127.0.0.3', '127.0.0.2'], aaaa: ['::1'], ttl: 30 } })
    const config = configSchema.parse(oneUpstream([{ url: 'https://svc.test:8443', weight: 3 }, 'http://127.0.0.1:9'])).upstreams.default
    const pool = new UpstreamPool('default', config, { resolverFactory: () => dns.resolver, lookup: null })
    env.defer(() => pool.close())
    assert.deepEqual(pool.endpoints.map((e) => e.label), ['127.0.0.1:9'], 'the IP literal is there before the name resolves')
    assert.equal((await pool.choose([])).endpoint?.label, '127.0.0.1:9', 'no wait while an endpoint is available')
    await waitFor('the name resolved', () => (pool.endpoints.length === 4 ? true : undefined))
    assert.deepEqual(pool.endpoints.map((e) => e.label), ['127.0.0.2:8443', '127.0.0.3:8443', '[::1]:8443', '127.0.0.1:9'], 'config order, addresses sorted')
    for (const e of pool.endpoints.slice(0, 3)) {
      assert.equal(e.resolvedFrom, 'svc.test')
      assert.equal(e.authority, 'svc.test:8443')
      assert.equal(e.weight, 3)
      assert.equal(e.tls?.servername, 'svc.test', 'SNI and the certificate check use the name')
      assert.equal(`${e.dispatcher.options.hostname}:${e.dispatcher.options.port}`, e.label.replace(/^\[|\](?=:)/g, ''), 'connections go to the address')
    }
    const [name] = pool.names()
    assert.deepEqual(name.addresses, ['127.0.0.2', '127.0.0.3', '::1'])
    assert.equal(name.ttlMs, 30_000)
    assert.equal(name.reason, null)
    assert.ok(name.nextAt !== null && Math.abs(name.nextAt - (Date.now() + 30_000)) < 1000, 'next resolution after the TTL')
  })

  test('active checks probe the address with the name as Host; new addresses are checked, gone ones no longer', async () => {
    const a = await recorder('127.0.0.2')
    const b = await recorder('127.0.0.3', a.port)
    const table: Table = { 'svc.test': { a: ['127.0.0.2'], ttl: 0 } }
    const dns = await dnsServer(table)
    const { pool, of } = watchedPool(env, [`http://svc.test:${a.port}`], {
      health_check: FAST_CHECKS, dns: { min_ttl: '50ms', resolvers: [`127.0.0.1:${dns.port}`] },
    })
    await waitFor('a probe of A', () => (a.seen.length > 0 ? true : undefined))
    assert.deepEqual(a.seen[0], { host: `svc.test:${a.port}`, agent: 'portico-health-check' })
    const oldEp = pool.endpoints[0]

    table['svc.test'] = { a: ['127.0.0.3'], ttl: 0 }
    await waitFor('B in the pool', () => (pool.endpoints[0]?.address === '127.0.0.3' ? true : undefined))
    const newEp = pool.endpoints[0]
    assert.equal(pool.endpoints.length, 1)
    await waitFor('two probes of B', () => (of(newEp).length >= 2 && b.seen.length >= 2 ? true : undefined))
    assert.ok(newEp.healthy)
    const probesOfA = a.seen.length
    await new Promise((r) => setTimeout(r, 200))
    assert.ok(a.seen.length <= probesOfA + 1, `A probed ${a.seen.length - probesOfA} more times after it left (one may have been under way)`)
    assert.equal(pool.health.active?.probes(oldEp), 0, 'the checker forgot A')
    assert.equal(oldEp.dispatcher.closed, true, 'A\'s connection pool is closed')
  })

  test('an address that leaves and comes back starts fresh: not ejected, no ejections counted', async () => {
    const table: Table = { 'svc.test': { a: ['127.0.0.2', '127.0.0.3'], ttl: 0 } }
    const dns = await dnsServer(table)
    const config = configSchema.parse(oneUpstream(['http://svc.test:9'], {
      outlier_detection: { consecutive_failures: 1, base_ejection_time: '60s' }, dns: { min_ttl: '50ms', resolvers: [`127.0.0.1:${dns.port}`] },
    })).upstreams.default
    const pool = new UpstreamPool('default', config)
    env.defer(() => pool.close())
    await pool.choose([])
    const first = pool.endpoints.find((e) => e.address === '127.0.0.2')
    assert.ok(first)
    pool.report(first, 'connection_refused', null)
    assert.equal(first.ejections, 1)
    assert.equal(pool.select(null, Date.now())?.address, '127.0.0.3', 'the ejected address is skipped')

    table['svc.test'] = { a: ['127.0.0.3'], ttl: 0 }
    await waitFor('127.0.0.2 gone', () => (pool.endpoints.length === 1 ? true : undefined))
    table['svc.test'] = { a: ['127.0.0.2', '127.0.0.3'], ttl: 0 }
    await waitFor('127.0.0.2 back', () => (pool.endpoints.length === 2 ? true : undefined))
    const again = pool.endpoints.find((e) => e.address === '127.0.0.2')
    assert.ok(again && again !== first, 'a new endpoint')
    assert.equal(again.ejections, 0)
    assert.ok(again.isAvailable(Date.now()))
    pool.report(again, 'connection_refused', null)
    assert.equal(again.ejections, 1, 'outlier detection counts the new endpoint')
  })

  test('a request waits for the first answer; a resolver that never answers gives dns_timeout after the connect timeout', async () => {
    const dns = await dnsServer({ 'slow.test': 'silent', 'svc.test': { a: ['127.0.0.2'], ttl: 5 } })
    const resolvers = [`127.0.0.1:${dns.port}`]
    const quick = new UpstreamPool('quick', configSchema.parse(oneUpstream(['http://svc.test:80'], { dns: { resolvers } })).upstreams.default)
    const silent = new UpstreamPool('silent', configSchema.parse(oneUpstream(['http://slow.test:80'], { timeouts: { connect: '200ms' }, dns: { resolvers } })).upstreams.default)
    env.defer(async () => { await quick.close(); await silent.close() })
    assert.equal(quick.endpoints.length, 0)
    assert.equal((await quick.choose([])).endpoint?.label, '127.0.0.2:80', 'answered without waiting for the next resolution')

    const t0 = performance.now()
    const none = await silent.choose([])
    const waited = performance.now() - t0
    assert.equal(none.endpoint, null)
    assert.equal(none.failure?.type, 'dns_timeout')
    assert.equal(none.failure?.endpoint, 'slow.test:80')
    assert.match(String(none.failure?.detail), /slow\.test/)
    assert.ok(waited >= 190 && waited < 1000, `waited ${waited.toFixed(0)}ms`)
  })

  test('closing the pool stops resolving', async () => {
    const table: Table = { 'svc.test': { a: ['127.0.0.2'], ttl: 0 } }
    const dns = await dnsServer(table)
    const config = configSchema.parse(oneUpstream(['http://svc.test:80'], { dns: { min_ttl: '20ms', resolvers: [`127.0.0.1:${dns.port}`] } })).upstreams.default
    const pool = new UpstreamPool('default', config)
    await pool.choose([])
    await pool.close()
    const queries = dns.queries
    table['svc.test'] = { a: ['127.0.0.3'], ttl: 0 }
    await new Promise((r) => setTimeout(r, 150))
    assert.equal(dns.queries, queries, 'no query after close')
    assert.deepEqual(pool.endpoints.map((e) => e.address), ['127.0.0.2'])
    assert.equal(pool.names()[0].nextAt, null)
  })
})
