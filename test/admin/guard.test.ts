// The admin API's guard over real loopback sockets: Host (DNS rebinding), Origin, the
// bearer token, JSON-only POSTs, the refusal to run on a public address without a token,
// the log line of each refusal and action, and `portico reload` sending token and JSON.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, afterEach, test } from 'node:test'
import { adminHostAllowed, AdminServer, readAdminToken } from '../../src/admin/server.ts'
import { reloadCommand } from '../../src/cli/reload.ts'
import { loadConfigFile } from '../../src/config/load.ts'
import { configSchema, type ConfigInput } from '../../src/config/schema.ts'
import { logger } from '../../src/lib/logger.ts'
import { memoryAccessLog } from '../../src/observe/access-log.ts'
import { Gateway } from '../../src/server/gateway.ts'
import { send } from '../helpers/client.ts'
import { oneUpstream, testEnv, type TestGateway } from '../helpers/gateway.ts'

const env = testEnv()
const dir = mkdtempSync(join(tmpdir(), 'portico-admin-guard-'))
after(() => rmSync(dir, { recursive: true, force: true }))

const TOKEN = 'c2VjcmV0LXRva2VuLWZvci10ZXN0cw'
const tokenFile = join(dir, 'admin.token')
writeFileSync(tokenFile, `${TOKEN}\n`)

/** What the process logger was given during a test: level and message. */
const logged: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = []
const original = { warn: logger.warn, info: logger.info }
for (const level of ['warn', 'info'] as const) {
  ;(logger as unknown as Record<string, unknown>)[level] = (obj: Record<string, unknown>, msg: string) => { logged.push({ level, obj, msg }) }
}
after(() => Object.assign(logger, original))
afterEach(() => { logged.length = 0 })

function adminPort(gw: TestGateway): number {
  const a = gw.gateway.admin?.address
  assert.ok(a, 'admin API listening')
  return a.port
}

async function guarded(admin: ConfigInput['admin'] = { address: '127.0.0.1:0' }): Promise<{ gw: TestGateway; port: number }> {
  const gw = await env.gateway(oneUpstream(['http://127.0.0.1:9'], {}, { admin }))
  return { gw, port: adminPort(gw) }
}

/** The log line of the last admin refusal. */
function lastRefusal(): { obj: Record<string, unknown>; msg: string } {
  const r = logged.filter((l) => l.level === 'warn' && /admin API refused/.test(l.msg)).at(-1)
  assert.ok(r, `a refusal was logged; got ${JSON.stringify(logged.map((l) => l.msg))}`)
  return r
}

test('a text/plain POST from a foreign Origin cannot reload: 403, nothing reloaded, logged', async () => {
  let reloads = 0
  const { gw, port } = await guarded()
  const real = gw.gateway.reloadFromSource.bind(gw.gateway)
  gw.gateway.reloadFromSource = () => { reloads++; return real() }
  const r = await send(port, { method: 'POST', path: '/reload', headers: { host: `127.0.0.1:${port}`, origin: 'http://evil.example', 'content-type': 'text/plain' }, body: 'x' })
  assert.equal(r.status, 403)
  assert.equal(r.json().error, 'forbidden_origin')
  assert.equal(r.headers.connection, 'close')
  assert.equal(reloads, 0)
  const line = lastRefusal()
  assert.match(line.msg, /refused POST \/reload: requests from http:\/\/evil\.example are refused/)
  assert.deepEqual({ ...(line.obj.admin as object), client_ip: undefined }, { method: 'POST', path: '/reload', status: 403, error: 'forbidden_origin', client_ip: undefined, host: `127.0.0.1:${port}`, origin: 'http://evil.example' })
  // A cross-site fetch without Origin still says so in Sec-Fetch-Site.
  const site = await send(port, { path: '/config', headers: { host: `127.0.0.1:${port}`, 'sec-fetch-site': 'cross-site' } })
  assert.equal(site.status, 403)
  // The API's own origin is not foreign.
  const own = await send(port, { path: '/healthz', headers: { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' } })
  assert.equal(own.status, 200)
})

test('POST bodies must be application/json: text/plain, a form and no Content-Type get 415; JSON reaches the handler', async () => {
  const { gw, port } = await guarded()
  const host = `127.0.0.1:${port}`
  for (const [type, body] of [['text/plain', '{"prefix":"http://"}'], ['application/x-www-form-urlencoded', 'prefix=http%3A%2F%2F'], ['multipart/form-data; boundary=x', '--x--'], [undefined, '']] as const) {
    const headers: Record<string, string> = { host }
    if (type !== undefined) headers['content-type'] = type
    const r = await send(port, { method: 'POST', path: '/cache/purge', headers, body })
    assert.equal(r.status, 415, `${type}`)
    assert.equal(r.json().error, 'unsupported_media_type')
    assert.equal(r.headers.accept, 'application/json')
    assert.equal((lastRefusal().obj.admin as { status: number }).status, 415)
  }
  const purge = await send(port, { method: 'POST', path: '/cache/purge', headers: { host, 'content-type': 'application/json; charset=utf-8' }, body: '{"prefix":"http://"}' })
  assert.equal(purge.status, 200)
  assert.deepEqual(purge.json(), { purged: 0 })
  const action = logged.find((l) => l.level === 'info' && /admin API: POST \/cache\/purge answered 200/.test(l.msg))
  assert.ok(action, 'the purge is logged')
  const reload = await send(port, { method: 'POST', path: '/reload', headers: { host, 'content-type': 'application/json' }, body: '{}' })
  assert.equal(reload.status, 400, 'reached the handler: this gateway has no config file to re-read')
  assert.ok(gw.gateway.admin)
})

test('Host must be an IP literal or localhost with the admin port: a rebinding name gets 421 over a raw socket', async () => {
  const { port } = await guarded()
  const raw = await new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`GET /config HTTP/1.1\r\nHost: attacker.example:${port}\r\n\r\n`))
    let data = ''
    s.setEncoding('utf8').on('data', (c: string) => { data += c }).on('end', () => resolve(data)).on('error', reject)
  })
  assert.match(raw, /^HTTP\/1\.1 421 /)
  assert.match(raw, /"error": "misdirected_request"/)
  assert.doesNotMatch(raw, /listeners/, 'no config in the answer')
  assert.match(lastRefusal().msg, /Host "attacker\.example:\d+" is not this admin API/)
  for (const host of [`localhost:${port}`, `LOCALHOST:${port}`, `127.0.0.1:${port}`]) {
    assert.equal((await send(port, { path: '/config', headers: { host } })).status, 200, host)
  }
  for (const host of [`127.0.0.1:${port + 1}`, '127.0.0.1', `evil.localhost:${port}`, `127.0.0.1.nip.io:${port}`]) {
    assert.equal((await send(port, { path: '/config', headers: { host } })).status, 421, host)
  }
  assert.equal(adminHostAllowed(`[::1]:${port}`, port), true)
  assert.equal(adminHostAllowed('localhost', 80), true)
  assert.equal(adminHostAllowed(undefined, port), false)
})

/** Sends raw bytes to the admin API and resolves with what came back until it closed. */
function rawAdmin(port: number, bytes: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes))
    let data = ''
    s.setEncoding('utf8').on('data', (c: string) => { data += c }).on('end', () => resolve(data)).on('error', reject)
  })
}

test('Host must name the address the API listens on: another IP, 0.0.0.0, [::1] on an IPv4 bind, two Host fields and an absolute-form target naming another host are refused', async () => {
  const { port } = await guarded()
  for (const host of [`0.0.0.0:${port}`, `10.1.2.3:${port}`, `127.0.0.2:${port}`, `[::1]:${port}`, `localhost.:${port}`]) {
    const raw = await rawAdmin(port, `GET /config HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
    assert.match(raw, /^HTTP\/1\.1 421 /, host)
    assert.match(raw, /"error": "misdirected_request"/, host)
    assert.doesNotMatch(raw, /listeners/, 'no config in the answer')
    assert.match(lastRefusal().msg, /is not this admin API/)
  }
  const twice = await rawAdmin(port, `GET /config HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nHost: attacker.example\r\n\r\n`)
  assert.match(twice, /^HTTP\/1\.1 400 /)
  assert.match(twice, /"error": "bad_request"/)
  assert.equal((lastRefusal().obj.admin as { status: number }).status, 400)
  // RFC 9112 §3.2.2: the authority of an absolute-form target wins over Host.
  const absolute = await rawAdmin(port, `GET http://attacker.example:${port}/config HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
  assert.match(absolute, /^HTTP\/1\.1 421 /)
  assert.match(lastRefusal().msg, /Host "attacker\.example:\d+" is not this admin API/)
  assert.equal((await send(port, { path: `http://127.0.0.1:${port}/config`, headers: { host: `127.0.0.1:${port}` } })).status, 200)
  assert.equal(adminHostAllowed(`127.0.0.1:${port}`, port, '127.0.0.1'), true)
  assert.equal(adminHostAllowed(`localhost:${port}`, port, '127.0.0.1'), true)
  assert.equal(adminHostAllowed(`[::1]:${port}`, port, '::1'), true)
  assert.equal(adminHostAllowed(`[0:0::1]:${port}`, port, '::1'), true)
  assert.equal(adminHostAllowed(`10.1.2.3:${port}`, port, '0.0.0.0'), true, 'any address of the host when listening on all')
  assert.equal(adminHostAllowed(`0.0.0.0:${port}`, port, '0.0.0.0'), false)
  assert.equal(adminHostAllowed(`localhost:${port}`, port, '10.1.2.3'), false)
})

test('with admin.token_file every endpoint but /healthz needs the bearer token', async () => {
  const { port } = await guarded({ address: '127.0.0.1:0', token_file: tokenFile })
  const host = `127.0.0.1:${port}`
  for (const path of ['/config', '/upstreams', '/failures', '/metrics']) {
    const none = await send(port, { path, headers: { host } })
    assert.equal(none.status, 401, path)
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="portico admin"')
    assert.equal(none.json().error, 'unauthorized')
    const wrong = await send(port, { path, headers: { host, authorization: `Bearer ${TOKEN}x` } })
    assert.equal(wrong.status, 401, path)
    assert.equal((await send(port, { path, headers: { host, authorization: `Bearer ${TOKEN}` } })).status, 200, path)
  }
  assert.match(lastRefusal().msg, /not the one of admin\.token_file/)
  assert.equal((await send(port, { path: '/healthz', headers: { host } })).status, 200)
  const post = await send(port, { method: 'POST', path: '/reload', headers: { host, 'content-type': 'application/json' }, body: '{}' })
  assert.equal(post.status, 401)
  const config = await send(port, { path: '/config', headers: { host, authorization: `Bearer ${TOKEN}` } })
  assert.equal((config.json() as { admin: { token_file: string } }).admin.token_file, '[redacted]')
})

test('a non-loopback admin address needs a token: refused by the schema and by the server', async () => {
  const input = oneUpstream(['http://127.0.0.1:9'], {}, { admin: { address: '0.0.0.0:9901' } })
  const r = configSchema.safeParse(input)
  assert.equal(r.success, false)
  assert.match(r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'), /admin\.token_file: the admin API on a non-loopback address needs admin\.token_file/)
  assert.equal(configSchema.safeParse(oneUpstream(['http://127.0.0.1:9'], {}, { admin: { address: '0.0.0.0:9901', token_file: tokenFile } })).success, true)
  assert.equal(configSchema.safeParse(oneUpstream(['http://127.0.0.1:9'], {}, { admin: { address: '[::1]:9901' } })).success, true)
  // The server checks again before binding (a Gateway built from a config object).
  const gateway = new Gateway(configSchema.parse(oneUpstream(['http://127.0.0.1:9'], {}, { admin: { address: '127.0.0.1:0' } })), { accessLog: memoryAccessLog() })
  const admin = new AdminServer(gateway)
  await assert.rejects(admin.listen('0.0.0.0', 0), /not on loopback and has no token: set admin\.token_file/)
  assert.equal(admin.address, null, 'nothing was bound')
})

test('readAdminToken: a missing or empty file is a clear error', () => {
  assert.equal(readAdminToken(tokenFile), TOKEN)
  const empty = join(dir, 'empty.token')
  writeFileSync(empty, '\n')
  assert.throws(() => readAdminToken(empty), /admin\.token_file .*empty\.token is empty/)
  assert.throws(() => readAdminToken(join(dir, 'missing.token')), /cannot read admin\.token_file: .*ENOENT/)
})

test('portico reload sends the token of admin.token_file and a JSON body', async () => {
  const upstream = await env.lab('ok')
  const file = join(dir, 'reload.yaml')
  writeFileSync(file, `listeners: [{ address: "127.0.0.1:0" }]
routes: [{ upstream: app }]
upstreams: { app: { endpoints: ["${upstream.url}"] } }
admin: { address: "127.0.0.1:0", token_file: "${tokenFile}" }
`)
  const gateway = new Gateway(await loadConfigFile(file), { accessLog: memoryAccessLog(), loadConfig: () => loadConfigFile(file), admin: (g) => new AdminServer(g) })
  await gateway.start()
  env.defer(() => gateway.stop(0))
  const address = `127.0.0.1:${gateway.admin?.address?.port}`
  const run = async (config: string) => {
    const out = new PassThrough()
    const err = new PassThrough()
    let o = ''
    let e = ''
    out.on('data', (c: Buffer) => { o += c })
    err.on('data', (c: Buffer) => { e += c })
    const code = await reloadCommand({ config, admin: address }, out, err)
    return { code, out: o, err: e }
  }
  const ok = await run(file)
  assert.equal(ok.code, 0, ok.err)
  assert.match(ok.out, /reloaded/)
  // The same config with another token: the running instance refuses.
  const wrongToken = join(dir, 'wrong.token')
  writeFileSync(wrongToken, 'not-the-token')
  const other = join(dir, 'other.yaml')
  writeFileSync(other, (await import('node:fs')).readFileSync(file, 'utf8').replace(tokenFile, wrongToken))
  const refused = await run(other)
  assert.equal(refused.code, 1)
  assert.match(refused.err, /refused \(401\): the bearer token is not the one of admin\.token_file/)
})
