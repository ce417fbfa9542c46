// Gateway.stop(drainMs): stop accepting, close idle keep-alive connections, let in-flight requests finish with Connection: close.
import assert from 'node:assert/strict'
import http from 'node:http'
import { test } from 'node:test'
import { oneUpstream, testEnv, waitFor } from '../helpers/gateway.ts'

const env = testEnv()

/** GET on `agent`; resolves with the status, the Connection header and the body. */
function get(port: number, path: string, agent: http.Agent): Promise<{ status: number; connection: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }))
    }).on('error', reject)
  })
}

function socketOf(agent: http.Agent): import('node:net').Socket {
  const sockets = Object.values(agent.freeSockets).flat()
  assert.equal(sockets.length, 1, 'one idle keep-alive connection')
  return sockets[0]!
}

test('in-flight requests finish with Connection: close, idle keep-alive connections close at once, stop() does not wait for keep-alive timeouts', async () => {
  const up = await env.lab('ok')
  const gw = await env.gateway(oneUpstream([up.url]))
  const busy = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const idle = new http.Agent({ keepAlive: true, maxSockets: 1 })
  env.defer(() => { busy.destroy(); idle.destroy() })
  // Both connections served one request already: they are reused keep-alive connections.
  assert.equal((await get(gw.port, '/', busy)).status, 200)
  assert.equal((await get(gw.port, '/', idle)).status, 200)
  const idleSocket = socketOf(idle)
  const idleClosed = new Promise<void>((resolve) => idleSocket.once('close', () => resolve()))

  assert.equal(up.requests, 2)
  const slow = get(gw.port, '/delay/300', busy)
  await waitFor('the slow request to reach the upstream', () => (up.requests === 3 ? true : undefined))
  const t0 = performance.now()
  const stopped = gw.gateway.stop(5000)
  await idleClosed
  assert.ok(performance.now() - t0 < 200, 'the idle keep-alive connection is closed at once')

  const res = await slow
  assert.equal(res.status, 200)
  assert.equal(res.connection, 'close', 'the in-flight response tells the client the connection ends')
  await stopped
  const took = performance.now() - t0
  assert.ok(took < 1500, `stop() returned after the in-flight request, in ${Math.round(took)}ms`)
  await assert.rejects(get(gw.port, '/', new http.Agent()), /ECONNREFUSED/)
  assert.ok(gw.records.some((r) => r.path === '/delay/300' && r.status === 200), 'the drained request is in the access log')
})

test('a response already streaming when draining starts: its connection is closed once it ends', async () => {
  // The body ends only once draining has started.
  let endBody = (): void => {}
  const draining = new Promise<void>((resolve) => { endBody = resolve })
  const up = await env.upstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first ')
    void draining.then(() => res.end('last'))
  })
  const gw = await env.gateway(oneUpstream([up]))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  env.defer(() => agent.destroy())
  const headers = new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: gw.port, path: '/', agent }, resolve).on('error', reject)
  })
  const res = await headers
  assert.equal(res.headers.connection, 'keep-alive', 'headers went out before draining')
  const socket = res.socket
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  let body = ''
  res.setEncoding('utf8').on('data', (d: string) => { body += d })
  const t0 = performance.now()
  const stopped = gw.gateway.stop(5000)
  endBody()
  await closed
  await stopped
  assert.equal(body, 'first last')
  assert.ok(performance.now() - t0 < 1500, 'stop() did not wait for the keep-alive timeout')
})

test('requests still running at the drain timeout are cut off', async () => {
  const up = await env.lab('ok')
  const gw = await env.gateway(oneUpstream([up.url]))
  const pending = get(gw.port, '/delay/2000', new http.Agent()).then(() => 'answered', (e: Error & { code?: string }) => e.code ?? 'error')
  await waitFor('the request to reach the upstream', () => (up.requests === 1 ? true : undefined))
  const t0 = performance.now()
  await gw.gateway.stop(200)
  const took = performance.now() - t0
  assert.ok(took >= 150 && took < 1500, `stopped after the drain timeout (${Math.round(took)}ms)`)
  assert.equal(await pending, 'ECONNRESET')
})
