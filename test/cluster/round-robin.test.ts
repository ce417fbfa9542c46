// Where reusePort is not available, workers share the primary's listening socket through
// node:cluster's round-robin hand-off: the same requests reach both, and the log says so.
// The primary runs in this test's process, with reusePort turned off.
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, test } from 'node:test'
import { parseConfig } from '../../src/config/load.ts'
import { Primary } from '../../src/cluster/primary.ts'
import { getFresh } from './cluster.ts'

test('round-robin hand-off: both workers serve one port through the primary', async () => {
  const up = http.createServer((_req, res) => res.end('rr'))
  await new Promise<void>((resolve) => up.listen(0, '127.0.0.1', resolve))
  after(() => up.close())
  const config = parseConfig(`listeners: [{ address: "127.0.0.1:0" }]
routes: [{ upstream: u }]
upstreams: { u: { endpoints: ["http://127.0.0.1:${(up.address() as AddressInfo).port}"] } }
access_log: { path: /dev/null }
`, 'rr.yaml')
  const primary = new Primary(config, { workers: 2, reusePort: false })
  after(() => primary.stop(0))
  await primary.start()
  assert.equal(primary.distribution, 'round-robin')
  const port = primary.listeners[0].port
  const answers = await Promise.all(Array.from({ length: 20 }, () => getFresh(`http://127.0.0.1:${port}/`)))
  assert.ok(answers.every((a) => a.status === 200 && a.body === 'rr'))
  const stats = await primary.ask<{ pid: number; upstreams: Array<{ endpoints: Array<{ requests: number }> }> }>({ q: 'stats' })
  const perWorker = stats.map((s) => (s.ok ? s.value.upstreams[0].endpoints[0].requests : -1))
  assert.equal(perWorker.reduce((a, b) => a + b, 0), 20)
  assert.ok(perWorker.every((n) => n > 0), `the primary hands connections to both workers in turn (${perWorker.join(', ')})`)
})
