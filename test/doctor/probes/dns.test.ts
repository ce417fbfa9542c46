import { test } from 'node:test'
import assert from 'node:assert/strict'
import { probeDns } from '../../../src/doctor/probes/dns.ts'
import { PORTICO_DEFAULTS, targetFromUrl } from '../../../src/doctor/probes/target.ts'
import { startDnsServer } from './dns-server.ts'

const target = (url: string) => targetFromUrl(url, 'upstream', PORTICO_DEFAULTS)

test('IP literals skip DNS', async () => {
  const { result, findings } = await probeDns(target('http://127.0.0.1:1'), { timeoutMs: 200 })
  assert.equal(result.literal, true)
  assert.deepEqual(result.addresses, [{ address: '127.0.0.1', family: 4 }])
  assert.deepEqual(findings, [])
})

test('answers with TTLs from DNS, and agreement with getaddrinfo', async (t) => {
  const dns = await startDnsServer({ 'app.test.invalid': { a: ['127.0.0.7'], aaaa: ['::1'], ttl: 42 } })
  t.after(() => dns.close())
  const { result, findings } = await probeDns(target('http://app.test.invalid:8080'), { timeoutMs: 500, lookup: dns.lookup, resolver: dns.resolver })
  assert.deepEqual(result.resolver.a, [{ address: '127.0.0.7', ttl: 42 }])
  assert.deepEqual(result.resolver.aaaa, [{ address: '::1', ttl: 42 }])
  assert.deepEqual(findings.map((f) => f.id), ['dns.answers'])
  assert.match(findings[0].evidence.join('\n'), /127\.0\.0\.7 ttl=42s/)
})

test('NXDOMAIN is dns_error', async (t) => {
  const dns = await startDnsServer({})
  t.after(() => dns.close())
  const { findings } = await probeDns(target('http://nope.invalid'), { timeoutMs: 500, lookup: dns.lookup, resolver: dns.resolver })
  assert.equal(findings[0].id, 'dns.nxdomain')
  assert.equal(findings[0].cause, 'dns_error')
})

test('SERVFAIL is dns_error', async (t) => {
  const dns = await startDnsServer({ 'broken.invalid': 'servfail' })
  t.after(() => dns.close())
  const { findings } = await probeDns(target('http://broken.invalid'), { timeoutMs: 500, lookup: dns.lookup, resolver: dns.resolver })
  assert.equal(findings[0].id, 'dns.servfail')
  assert.equal(findings[0].cause, 'dns_error')
})

test('a resolver that does not answer is dns_timeout, within the bound', async (t) => {
  const dns = await startDnsServer({ 'quiet.invalid': 'silent' })
  t.after(() => dns.close())
  const t0 = performance.now()
  const { findings } = await probeDns(target('http://quiet.invalid'), { timeoutMs: 200, lookup: dns.lookup, resolver: dns.resolver })
  assert.ok(performance.now() - t0 < 1500)
  assert.equal(findings[0].cause, 'dns_timeout')
})

test('getaddrinfo and DNS disagreeing (e.g. /etc/hosts) is a warning', async (t) => {
  const dns = await startDnsServer({ 'app.invalid': { a: ['127.0.0.9'] } })
  t.after(() => dns.close())
  const lookup = async () => [{ address: '127.0.0.2', family: 4 as const }]
  const { findings } = await probeDns(target('http://app.invalid'), { timeoutMs: 500, lookup, resolver: dns.resolver })
  assert.equal(findings[0].id, 'dns.mismatch')
})

test('localhost is never sent to a DNS server', async (t) => {
  const dns = await startDnsServer({})
  t.after(() => dns.close())
  const { result } = await probeDns(target('http://localhost:1'), { timeoutMs: 500, resolver: dns.resolver })
  assert.equal(dns.queries, 0)
  assert.ok(result.addresses.length > 0)
  assert.match(result.resolver.skipped ?? '', /RFC 6761/)
})
