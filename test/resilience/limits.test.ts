// Overload: an endpoint limited to 4 connections under 50 concurrent requests sheds the
// excess with 503 connection_limit_reached after the queue timeout; nothing hangs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { oneUpstream, testEnv } from '../helpers/gateway.ts'
import { send } from '../helpers/client.ts'
import { ownProxyStatus } from '../helpers/expect.ts'

const env = testEnv()

test('limit 4 connections, 50 concurrent requests: 4 served, the rest 503 connection_limit_reached after the queue timeout', async () => {
  // An upstream that counts the connections open at once: the limit is on concurrency (a
  // queued request cancelled at its start closes the connection it was given, so the total
  // number of connections over the test may exceed the limit).
  let open = 0
  let peak = 0
  const server = http.createServer((_req, res) => { setTimeout(() => res.end('ok'), 1500) })
  server.on('connection', (socket) => {
    peak = Math.max(peak, ++open)
    socket.once('close', () => { open-- })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  env.defer(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() }))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const gw = await env.gateway(oneUpstream([url], {
    limits: { max_connections: 4, max_pending: 100, queue_timeout: '300ms' },
    timeouts: { connect: '1s', response_header: '5s', idle: '5s' },
    retries: { attempts: 1 },
  }))
  const agent = new http.Agent({ keepAlive: false, maxSockets: 100 })
  const t0 = performance.now()
  const replies = await Promise.all(Array.from({ length: 50 }, () => send(gw.port, { path: '/slow', agent, timeoutMs: 8000 })))
  const elapsed = performance.now() - t0
  agent.destroy()
  const ok = replies.filter((r) => r.status === 200)
  const shed = replies.filter((r) => r.status === 503)
  assert.equal(ok.length + shed.length, 50, `statuses: ${replies.map((r) => r.status || r.error).join(',')}`)
  assert.equal(ok.length, 4, 'exactly the connection limit was served')
  for (const r of shed) {
    assert.equal(ownProxyStatus(r).error, 'connection_limit_reached')
    assert.equal(r.headers['retry-after'], '5')
    // Shed after waiting the queue timeout, not at once and not after the slow requests.
    assert.ok(r.headMs >= 250 && r.headMs < 1400, `shed after ${r.headMs.toFixed(0)}ms`)
  }
  assert.ok(elapsed < 5000, `all answered in ${elapsed.toFixed(0)}ms`)
  const records = await gw.waitForRecords(50)
  assert.equal(records.filter((r) => r.error === 'connection_limit_reached').length, 46)
  assert.ok(peak <= 4, `the endpoint had ${peak} connections open at once`)
  await gw.settled(5000)
})

test('a full pending queue sheds at once', async () => {
  const up = await env.lab('ok')
  const gw = await env.gateway(oneUpstream([up.url], {
    limits: { max_connections: 1, max_pending: 2, queue_timeout: '2s' },
    retries: { attempts: 1 },
  }))
  const agent = new http.Agent({ keepAlive: false, maxSockets: 20 })
  const replies = await Promise.all(Array.from({ length: 10 }, () => send(gw.port, { path: '/delay/600', agent, timeoutMs: 8000 })))
  agent.destroy()
  const immediate = replies.filter((r) => r.status === 503 && r.headMs < 400)
  assert.ok(immediate.length >= 5, `shed at once: ${immediate.length}; statuses ${replies.map((r) => `${r.status}@${r.headMs.toFixed(0)}`).join(',')}`)
  for (const r of immediate) assert.equal(ownProxyStatus(r).error, 'connection_limit_reached')
  await gw.settled(5000)
})

test('a request body over max_request_body_size gets 413 http_request_denied before anything is sent upstream', async () => {
  const up = await env.lab('ok')
  const cfg = oneUpstream([up.url])
  cfg.listeners = [{ address: '127.0.0.1:0', max_request_body_size: '1KiB' }]
  const gw = await env.gateway(cfg)
  const big = await send(gw.port, { method: 'POST', path: '/echo', body: Buffer.alloc(4096, 1) })
  assert.equal(big.status, 413)
  assert.equal(ownProxyStatus(big).error, 'http_request_denied')
  assert.equal(up.requests, 0)
  const small = await send(gw.port, { method: 'POST', path: '/echo', body: Buffer.alloc(512, 1) })
  assert.equal(small.status, 200)
  assert.equal(small.body.length, 512)
})
