// Endpoints on unix sockets (`unix:/path/app.sock`): proxied, health-checked and classified like TCP endpoints.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configSchema } from '../../src/config/schema.ts'
import { oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'

const env = testEnv()

async function socketServer(path: string, handler: http.RequestListener): Promise<http.Server> {
  const server = http.createServer(handler)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => resolve())
  })
  env.defer(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return server
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-unix-'))
  env.defer(() => rm(dir, { recursive: true, force: true }))
  return dir
}

test('config: unix:/path endpoints are accepted, relative or empty paths are not', () => {
  assert.equal(configSchema.safeParse(oneUpstream(['unix:/run/app.sock'])).success, true)
  for (const bad of ['unix:run/app.sock', 'unix:', 'unix:/run/app.sock:', 'unix:/run/']) {
    assert.equal(configSchema.safeParse(oneUpstream([bad])).success, false, bad)
  }
})

test('a request goes to the application on the unix socket, with Host localhost and the endpoint logged as unix:/path', async () => {
  const path = join(await tempDir(), 'app.sock')
  let host = ''
  await socketServer(path, (req, res) => { host = req.headers.host ?? ''; res.end('over the socket') })
  const gw = await env.gateway(oneUpstream([`unix:${path}`], {}, { routes: [{ name: 'default', upstream: 'default', preserve_host: false }] }))
  const res = await fetch(`${gw.origin}/x`)
  assert.equal(res.status, 200)
  assert.equal(await res.text(), 'over the socket')
  assert.equal(host, 'localhost')
  const [rec] = await gw.waitForRecords(1)
  assert.equal(rec.endpoint, `unix:${path}`)
})

test('a missing socket is a 502 connection_refused; the health check marks the endpoint down for the same reason', async () => {
  const path = join(await tempDir(), 'missing.sock')
  const gw = await env.gateway(oneUpstream([`unix:${path}`], { health_check: { interval: '50ms', timeout: '200ms', unhealthy_threshold: 1 } }))
  const res = await fetch(`${gw.origin}/`)
  await res.text()
  assert.ok([502, 503].includes(res.status))
  assert.match(res.headers.get('proxy-status') ?? '', /error=(connection_refused|destination_unavailable)/)
  const ep = gw.gateway.runtime.pools.get('default')!.endpoints[0]
  await waitFor('the health check to mark the endpoint down', () => (ep.healthy ? undefined : true))
  assert.equal(ep.downReason, 'connection_refused')
})
