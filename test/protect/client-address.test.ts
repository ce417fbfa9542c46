/**
 * The real client address and what reaches the upstream, over loopback sockets: a client
 * that is not a trusted proxy cannot make Portico believe, or the upstream read as the
 * truth, a spoofed X-Forwarded-For / X-Forwarded-Proto / X-Real-IP / Forwarded; a trusted
 * proxy's chain is walked from the right (nginx realip, real_ip_recursive on), and rules,
 * limits and the log use the address found.
 */
import assert from 'node:assert/strict'
import type http from 'node:http'
import { test } from 'node:test'
import { testEnv } from '../helpers/gateway.ts'
import { sendFrom } from '../helpers/from.ts'

const env = testEnv()

async function recording(): Promise<{ url: string; seen: http.IncomingHttpHeaders[] }> {
  const seen: http.IncomingHttpHeaders[] = []
  const url = await env.upstream((req, res) => { seen.push(req.headers); res.end('ok') })
  return { url, seen }
}

const SPOOF = {
  'x-forwarded-for': '203.0.113.66',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'bank.example',
  'x-real-ip': '203.0.113.66',
  'true-client-ip': '203.0.113.66',
  forwarded: 'for=203.0.113.66;proto=https',
}

test('an untrusted client: spoofed fields are not believed by rules or the log, and not forwarded as the truth', async () => {
  const up = await recording()
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    // Trusts a proxy elsewhere: 127.0.0.2 is not it.
    trusted_proxies: ['127.0.0.1/32'],
    routes: [{ name: 'r', upstream: 'app', forwarded: true, access: [{ allow: '203.0.113.0/24' }, { deny: '127.0.0.2' }] }],
    upstreams: { app: { endpoints: [up.url] } },
  })
  const r = await sendFrom(gw.port, { from: '127.0.0.2', headers: { host: 'site.test', ...SPOOF } })
  assert.equal(r.status, 403, 'the allow for the spoofed address does not apply; the deny of the real one does')
  const rec = await gw.record(String(r.headers['x-request-id']))
  assert.equal(rec.client_ip, '127.0.0.2')

  const ok = await sendFrom(gw.port, { from: '127.0.0.3', headers: { host: 'site.test', ...SPOOF } })
  assert.equal(ok.status, 200)
  assert.equal((await gw.record(String(ok.headers['x-request-id']))).client_ip, '127.0.0.3')
  const h = up.seen[0]
  assert.equal(h['x-real-ip'], '127.0.0.3', 'X-Real-IP is the connection address')
  assert.equal(h['x-forwarded-for'], '203.0.113.66, 127.0.0.3', 'appended: the last element is the address Portico saw')
  assert.equal(h['x-forwarded-proto'], 'http', 'overwritten: the client spoke plain http')
  assert.equal(h['x-forwarded-host'], 'site.test')
  assert.equal(h['true-client-ip'], undefined)
  assert.equal(h.forwarded, 'for=127.0.0.3;host=site.test;proto=http', 'the spoofed Forwarded element is replaced by this hop\'s')
})

test('a trusted proxy chain: walked from the right past trusted hops; its X-Forwarded-Proto/Host pass; rules and log use the client found', async () => {
  const up = await recording()
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    trusted_proxies: ['127.0.0.10', '10.0.0.0/8'],
    routes: [{ name: 'r', upstream: 'app', forwarded: true, access: [{ deny: '198.51.100.0/24' }] }],
    upstreams: { app: { endpoints: [up.url] } },
  })
  const chain = { host: 'site.test', 'x-forwarded-for': '192.0.2.1, 203.0.113.9, 10.1.1.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'www.example', forwarded: 'for=203.0.113.9, for=10.1.1.1' }
  const r = await sendFrom(gw.port, { from: '127.0.0.10', headers: chain })
  assert.equal(r.status, 200)
  assert.equal((await gw.record(String(r.headers['x-request-id']))).client_ip, '203.0.113.9', 'the spoofable 192.0.2.1 left of it is never reached')
  const h = up.seen[0]
  assert.equal(h['x-real-ip'], '203.0.113.9')
  assert.equal(h['x-forwarded-for'], '192.0.2.1, 203.0.113.9, 10.1.1.1, 127.0.0.10')
  assert.equal(h['x-forwarded-proto'], 'https', 'a trusted proxy terminated TLS')
  assert.equal(h['x-forwarded-host'], 'www.example')
  assert.equal(h.forwarded, 'for=203.0.113.9, for=10.1.1.1, for=127.0.0.10;host=site.test;proto=http', 'appended to the trusted chain')

  const denied = await sendFrom(gw.port, { from: '127.0.0.10', headers: { 'x-forwarded-for': '198.51.100.4, 10.0.0.1' } })
  assert.equal(denied.status, 403, 'a rule applies to the client behind the proxy')
  assert.equal((await gw.record(String(denied.headers['x-request-id']))).client_ip, '198.51.100.4')
})

test('real_ip_header forwarded reads RFC 7239 for= nodes, IPv6 included', async () => {
  const up = await recording()
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    trusted_proxies: ['127.0.0.0/8'],
    real_ip_header: 'forwarded',
    routes: [{ name: 'r', upstream: 'app', match: { client_ip: ['2001:db8::/32'] } }, { name: 'v4', match: { path_prefix: '/' , methods: ['GET'] }, upstream: 'app' }],
    upstreams: { app: { endpoints: [up.url] } },
  })
  const r = await sendFrom(gw.port, { headers: { forwarded: 'for="[2001:db8::7]:443";proto=https', 'x-forwarded-for': '192.0.2.9' } })
  const rec = await gw.record(String(r.headers['x-request-id']))
  assert.equal(rec.client_ip, '2001:db8::7')
  assert.equal(rec.route, 'r', 'match.client_ip sees the real client address')
  assert.equal(up.seen[0]['x-real-ip'], '2001:db8::7')
})
