// Tests of the static nginx configuration checks (src/doctor/checks/nginx-config.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { readNginxConfig, checkNginxConfig } from '../../../src/doctor/nginx/index.ts'
import type { Finding } from '../../../src/doctor/finding.ts'

const SITE = resolve(import.meta.dirname, '../../fixtures/nginx/site')

async function check(t: { after: (fn: () => Promise<void>) => void }, http: string, observedMaxHeaderBytes?: number): Promise<Finding[]> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-nginx-check-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'nginx.conf'), `events {}\nhttp {\n${http}\n}\n`)
  return checkNginxConfig(await readNginxConfig(join(dir, 'nginx.conf')), { observedMaxHeaderBytes })
}

function ids(fs: Finding[]): string[] {
  return fs.map((f) => f.id).sort()
}

/** A configuration with nothing to report: keep-alive done right, IPs, sane timeouts. */
const GOOD = `
  upstream app { server 127.0.0.1:3000; keepalive 16; keepalive_timeout 4s; }
  server {
    listen 8080;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_connect_timeout 5s;
    location / { proxy_pass http://app; }
  }`

test('a healthy configuration yields no findings', async (t) => {
  assert.deepEqual(await check(t, GOOD), [])
})

test('upstream host name without resolve → resolve-once risk (dns_error) with file:line', async (t) => {
  const fs = await check(t, GOOD.replace('server 127.0.0.1:3000;', 'server app.internal:3000;'))
  assert.deepEqual(ids(fs), ['nginx.resolve_once'])
  assert.equal(fs[0].cause, 'dns_error')
  assert.match(fs[0].evidence[0], /nginx\.conf:4: server app\.internal:3000/)
  assert.match(fs[0].fix, /resolver/)
  assert.match(fs[0].fix, /server app\.internal:3000 resolve;/)
})

test('the resolve parameter silences the resolve-once risk', async (t) => {
  const fs = await check(t, GOOD.replace('server 127.0.0.1:3000;', 'zone app 64k; resolver 127.0.0.53; server app.internal:3000 resolve;'))
  assert.deepEqual(ids(fs), [])
})

test('variable proxy_pass with a host name and no resolver → error; with a resolver → fine', async (t) => {
  const base = `
  server {
    location / { set $b app.internal:3000; proxy_pass http://$b; proxy_http_version 1.1; }
  }`
  const fs = await check(t, base)
  const f = fs.find((x) => x.id === 'nginx.no_resolver')
  assert.ok(f)
  assert.equal(f.severity, 'error')
  assert.equal(f.cause, 'dns_error')
  const ok = await check(t, base.replace('server {', 'server { resolver 127.0.0.53;'))
  assert.ok(!ok.some((x) => x.id === 'nginx.no_resolver'))
})

test('direct proxy_pass to a host name → resolve-once risk', async (t) => {
  const fs = await check(t, 'server { location / { proxy_pass http://app.internal:3000; } }')
  assert.ok(fs.some((f) => f.id === 'nginx.resolve_once' && f.target === 'app.internal'))
})

test('no upstream keepalive → ephemeral port exhaustion risk', async (t) => {
  const fs = await check(t, GOOD.replace(' keepalive 16;', ''))
  assert.deepEqual(ids(fs), ['nginx.keepalive_missing'])
  assert.match(fs[0].title, /Cannot assign requested address/)
  assert.match(fs[0].fix, /proxy_http_version 1\.1/)
})

test('keepalive without proxy_http_version 1.1 or Connection "" is ineffective', async (t) => {
  const fs = await check(t, GOOD.replace('proxy_http_version 1.1;', ''))
  assert.deepEqual(ids(fs), ['nginx.keepalive_ineffective'])
  assert.match(fs[0].evidence[0], /proxy_http_version 1\.0 \(default\)/)
  const fs2 = await check(t, GOOD.replace('location / {', 'location / { proxy_set_header Host $host;'))
  assert.deepEqual(ids(fs2), ['nginx.keepalive_ineffective'])
  assert.match(fs2[0].evidence[0], /Connection "close"/)
})

test('upstream keepalive_timeout at or above 5s (or the 60s default) → keep-alive race', async (t) => {
  for (const [from, to] of [[' keepalive_timeout 4s;', ''], ['keepalive_timeout 4s', 'keepalive_timeout 5s']]) {
    const fs = await check(t, GOOD.replace(from, to))
    assert.deepEqual(ids(fs), ['nginx.keepalive_race'])
    assert.equal(fs[0].cause, 'connection_terminated')
    assert.match(fs[0].fix, /keepalive_timeout 4s/)
  }
})

test('timeouts: zero, read below connect, connect above 75s', async (t) => {
  const zero = await check(t, GOOD.replace('proxy_connect_timeout 5s;', 'proxy_read_timeout 0;'))
  assert.deepEqual(ids(zero), ['nginx.timeout_zero'])
  assert.equal(zero[0].cause, 'http_response_timeout')
  assert.match(zero[0].evidence[0], /nginx\.conf:\d+: proxy_read_timeout 0/)
  const order = await check(t, GOOD.replace('proxy_connect_timeout 5s;', 'proxy_connect_timeout 10s; proxy_read_timeout 3s;'))
  assert.deepEqual(ids(order), ['nginx.timeout_order'])
  const capped = await check(t, GOOD.replace('proxy_connect_timeout 5s;', 'proxy_connect_timeout 90s; proxy_read_timeout 120s;'))
  assert.deepEqual(ids(capped), ['nginx.connect_timeout_capped'])
})

test('scheme mismatch: https to a plain port, http to a TLS port', async (t) => {
  for (const port of [80, 8080, 3000, 5000, 8000]) {
    const fs = await check(t, GOOD.replace('http://app', `https://127.0.0.1:${port}`).replace(/upstream app[^\n]*/, ''))
    const f = fs.find((x) => x.id === 'nginx.scheme_mismatch')
    assert.equal(f?.cause, 'tls_protocol_error', `port ${port}`)
  }
  const fs = await check(t, GOOD.replace('127.0.0.1:3000', '127.0.0.1:8443'))
  const f = fs.find((x) => x.id === 'nginx.scheme_mismatch')
  assert.equal(f?.cause, 'http_protocol_error')
  assert.equal(f?.target, 'http://127.0.0.1:8443/')
  const fine = await check(t, GOOD.replace('http://app', 'https://app').replace('127.0.0.1:3000', '127.0.0.1:8443'))
  assert.ok(!fine.some((x) => x.id === 'nginx.scheme_mismatch'))
})

test('proxy_buffer_size below an observed header size → too big header', async (t) => {
  assert.deepEqual(await check(t, GOOD, 4000), [])
  const fs = await check(t, GOOD, 6000)
  assert.deepEqual(ids(fs), ['nginx.header_buffer_small'])
  assert.equal(fs[0].cause, 'http_response_header_section_size')
  assert.match(fs[0].fix, /proxy_buffer_size 8k; proxy_buffers 8 8k;/)
  const big = await check(t, GOOD.replace('location / {', 'location / { proxy_buffer_size 16k;'), 6000)
  assert.deepEqual(big, [])
})

test('fixture: findings are ranked by likelihood', async () => {
  const fs = checkNginxConfig(await readNginxConfig(join(SITE, 'nginx.conf')))
  assert.ok(fs.length > 0)
  for (let i = 1; i < fs.length; i++) assert.ok(fs[i - 1].likelihood >= fs[i].likelihood)
  assert.ok(fs.some((f) => f.id === 'nginx.keepalive_missing' && f.target === 'legacy'))
  assert.ok(fs.some((f) => f.id === 'nginx.resolve_once' && f.target === 'legacy'))
})
