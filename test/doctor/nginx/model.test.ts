// Tests of the doctor model of an nginx configuration: inheritance, defaults, proxy targets, logs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { readNginxConfig, parseNginxTime, parseNginxSize, NginxParseError } from '../../../src/doctor/nginx/index.ts'
import type { NginxModel } from '../../../src/doctor/nginx/index.ts'

const SITE = resolve(import.meta.dirname, '../../fixtures/nginx/site')

/** Reads a one-file configuration written to a temporary directory. */
async function model(t: { after: (fn: () => Promise<void>) => void }, text: string): Promise<NginxModel> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-nginx-model-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'nginx.conf'), text)
  return readNginxConfig(join(dir, 'nginx.conf'))
}

test('nginx time and size syntax', () => {
  assert.equal(parseNginxTime('30s'), 30_000)
  assert.equal(parseNginxTime('1m'), 60_000)
  assert.equal(parseNginxTime('500ms'), 500)
  assert.equal(parseNginxTime('1h 30m'), 5_400_000)
  assert.equal(parseNginxTime('1h30m'), 5_400_000)
  assert.equal(parseNginxTime('75'), 75_000)
  assert.throws(() => parseNginxTime('10x'), RangeError)
  assert.throws(() => parseNginxTime(''), RangeError)
  assert.equal(parseNginxSize('8k'), 8192)
  assert.equal(parseNginxSize('1m'), 1_048_576)
  assert.equal(parseNginxSize('512'), 512)
  assert.throws(() => parseNginxSize('4kb'), RangeError)
})

test('fixture: targets with inherited timeouts, upstream expansion and keep-alive', async () => {
  const m = await readNginxConfig(join(SITE, 'nginx.conf'))
  assert.deepEqual(m.upstreams.map((u) => u.name), ['api', 'legacy'])
  const api = m.upstreams[0]
  assert.deepEqual(api.servers.map((s) => [s.host, s.port, s.weight, s.maxFails, s.failTimeoutMs, s.backup]), [
    ['127.0.0.1', 3000, 3, 2, 30_000, false], ['127.0.0.1', 3001, 1, 1, 10_000, true],
  ])
  assert.equal(api.keepalive, 32)
  assert.equal(api.keepaliveTimeoutMs, 4000)
  const legacy = m.upstreams[1]
  assert.equal(legacy.keepalive, null)
  assert.equal(legacy.keepaliveTimeoutMs, 60_000, 'nginx default keepalive_timeout')
  assert.equal(legacy.servers[1].down, true)

  const byUrl = new Map(m.targets.map((t) => [t.url, t]))
  const a = byUrl.get('http://127.0.0.1:3000/')
  assert.ok(a)
  assert.equal(a.upstream, 'api')
  // connect from http, read from the location ("1m 30s"), send is the nginx default
  assert.deepEqual(a.timeouts, { connectMs: 5000, readMs: 90_000, sendMs: 60_000 })
  assert.deepEqual(a.keepalive, { connections: 32, timeoutMs: 4000, requests: 1000 })
  assert.equal(a.server, 'example.test')

  // The /legacy location sets its own proxy_set_header (from an include), so Connection "" is not inherited.
  const l = byUrl.get('http://app.internal:5000/')
  assert.ok(l)
  assert.equal(l.settings.headers.connection, 'close')
  assert.equal(l.settings.headers.host, '$host')
  assert.equal(l.settings.httpVersion, '1.1')
  assert.equal(l.timeouts.readMs, 30_000)

  const d = byUrl.get('http://127.0.0.1:3002/v2/')
  assert.ok(d)
  assert.equal(d.upstream, null)
  assert.equal(d.settings.bufferSizeBytes, 8192)
  assert.equal(l.settings.bufferSizeBytes, 4096, 'default proxy_buffer_size')
})

test('fixture: variable proxy_pass is runtime-resolved, set values substituted, resolver inherited', async () => {
  const m = await readNginxConfig(join(SITE, 'nginx.conf'))
  const dyn = m.servers.find((s) => s.serverNames[0] === 'dynamic.test')
  assert.ok(dyn)
  const root = dyn.locations.find((l) => l.match === '/')
  assert.equal(root?.proxyPass?.host, 'backend.internal')
  assert.equal(root?.proxyPass?.port, 8443)
  assert.equal(root?.proxyPass?.runtimeResolved, true)
  assert.deepEqual(root?.settings.resolver, ['127.0.0.53'])
  assert.equal(root?.settings.resolverTimeoutMs, 5000)
  assert.equal(root?.settings.sslServerName, true)
  const raw = dyn.locations.find((l) => l.match === '/raw/')
  assert.equal(raw?.proxyPass?.host, null, 'a request header variable stays unknown')
  assert.ok(!m.targets.some((t) => t.location === '/raw/'))
  const t = m.targets.find((x) => x.host === 'backend.internal')
  assert.equal(t?.url, 'https://backend.internal:8443/')
  assert.equal(t?.runtimeResolved, true)
})

test('fixture: log files and formats', async () => {
  const m = await readNginxConfig(join(SITE, 'nginx.conf'))
  assert.deepEqual(m.errorLogs.map((e) => [e.path, e.level, e.line]), [['logs/error.log', 'warn', 3]])
  assert.equal(m.accessLogs[0].format, 'upstream_time')
  assert.match(m.accessLogs[0].formatString ?? '', /us="\$upstream_status"$/)
  assert.ok(m.logFormats.combined.format.startsWith('$remote_addr - $remote_user [$time_local]'))
})

test('defaults apply when nothing is set', async (t) => {
  const m = await model(t, 'events {}\nhttp { server { location / { proxy_pass http://127.0.0.1:8000; } } }\n')
  const s = m.servers[0].locations[0].settings
  assert.equal(s.connectTimeoutMs, 60_000)
  assert.equal(s.readTimeoutMs, 60_000)
  assert.equal(s.sendTimeoutMs, 60_000)
  assert.equal(s.resolver, null)
  assert.equal(s.resolverTimeoutMs, 30_000)
  assert.equal(s.bufferSizeBytes, 4096)
  assert.equal(s.httpVersion, '1.0')
  assert.equal(s.headers.connection, 'close')
  assert.deepEqual(s.nextUpstream, ['error', 'timeout'])
  assert.deepEqual(s.sources, {})
  assert.equal(m.servers[0].listen[0], '*:80')
  assert.equal(m.targets[0].port, 8000)
  assert.equal(m.accessLogs.length, 0)
})

test('inheritance: nearest level wins, nested location inherits from its parent', async (t) => {
  const m = await model(t, `events {}
http {
  proxy_read_timeout 10s;
  proxy_next_upstream error timeout http_502;
  server {
    proxy_read_timeout 20s;
    location /a/ {
      proxy_connect_timeout 500ms;
      proxy_pass http://127.0.0.1:3000;
      location /a/b/ { proxy_pass http://127.0.0.1:3001; }
    }
    location /c/ { proxy_pass https://127.0.0.1:8443; }
  }
}
`)
  const [a, ab, c] = m.servers[0].locations
  assert.equal(a.settings.readTimeoutMs, 20_000)
  assert.equal(a.settings.connectTimeoutMs, 500)
  assert.equal(ab.settings.connectTimeoutMs, 500)
  assert.equal(ab.match, '/a/b/')
  assert.equal(c.settings.connectTimeoutMs, 60_000)
  assert.deepEqual(c.settings.nextUpstream, ['error', 'timeout', 'http_502'])
  assert.equal(m.targets.find((x) => x.location === '/c/')?.port, 8443)
  assert.equal(a.settings.sources.readTimeoutMs?.line, 6)
})

test('proxy_pass to an upstream name followed by a variable URI keeps the upstream', async (t) => {
  const m = await model(t, 'events {}\nhttp { upstream app { server 10.0.0.1:81; } server { location / { proxy_pass http://app$request_uri; } } }\n')
  const pp = m.servers[0].locations[0].proxyPass
  assert.equal(pp?.upstream, 'app')
  assert.equal(pp?.runtimeResolved, true)
  assert.equal(m.targets[0].url, 'http://10.0.0.1:81/')
})

test('an invalid value doctor reads is an error at its line', async (t) => {
  await assert.rejects(model(t, 'events {}\nhttp {\n  proxy_read_timeout 10x;\n}\n'), (e: unknown) => e instanceof NginxParseError && e.line === 3 && /invalid time "10x"/.test(e.message))
})

test('the other pass modules and unix sockets are targets, with their own *_read_timeout and the worker user', async (t) => {
  const m = await model(t, `user www-data;
events {}
http {
  fastcgi_read_timeout 7s;
  upstream php { server unix:/run/php/fpm.sock; server 127.0.0.1:9001; keepalive 4; }
  server {
    listen 80;
    location / { proxy_pass http://unix:/run/app.sock:; proxy_read_timeout 3s; }
    location ~ \\.php$ { fastcgi_pass php; fastcgi_keep_conn on; }
    location = /ping { fastcgi_pass 127.0.0.1:9000; }
    location /u { uwsgi_pass 127.0.0.1:3031; uwsgi_read_timeout 2s; }
    location /s { scgi_pass unix:/run/scgi.sock; }
    location /g { grpc_pass grpcs://127.0.0.1:50051; }
  }
}
`)
  assert.equal(m.user, 'www-data')
  const t2 = m.targets.map((x) => [x.directive, x.url, x.socketPath, x.timeouts.readMs, x.keepalive !== null])
  assert.deepEqual(t2, [
    ['proxy_pass', 'http://unix:/run/app.sock:', '/run/app.sock', 3000, false],
    ['fastcgi_pass', 'http://unix:/run/php/fpm.sock:', '/run/php/fpm.sock', 7000, true],
    ['fastcgi_pass', 'http://127.0.0.1:9001/', null, 7000, true],
    ['fastcgi_pass', 'http://127.0.0.1:9000/ping', null, 7000, false],
    ['uwsgi_pass', 'http://127.0.0.1:3031/', null, 2000, false],
    ['scgi_pass', 'http://unix:/run/scgi.sock:', '/run/scgi.sock', 60000, false],
    ['grpc_pass', 'https://127.0.0.1:50051/', null, 60000, false],
  ])
  assert.equal(m.targets[3].exactPath, '/ping')
  assert.equal(m.targets[1].pass, 'fastcgi_pass php;')
})
