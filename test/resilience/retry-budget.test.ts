// Retry budget: with every endpoint failing, upstream attempts stay within the budget.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { oneUpstream, testEnv } from '../helpers/gateway.ts'
import { send } from '../helpers/client.ts'

const env = testEnv()

/** An upstream answering 503 after `delayMs`, counting requests. */
async function failing(delayMs: number): Promise<{ url: string; count: () => number }> {
  let n = 0
  const url = await env.upstream((_req, res) => {
    n++
    setTimeout(() => { res.writeHead(503, { 'content-type': 'text/plain' }); res.end('down') }, delayMs)
  })
  return { url, count: () => n }
}

test('all endpoints answering 503: retries stay within max(min_concurrency, ratio × active requests)', async () => {
  const ups = await Promise.all([failing(200), failing(200), failing(200)])
  const gw = await env.gateway(oneUpstream(ups.map((u) => u.url), {
    retries: { attempts: 3, on: [503], budget: { ratio: 0.2, min_concurrency: 3 } },
    outlier_detection: { consecutive_failures: 1000, consecutive_5xx: 0 },
  }))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 100 })
  const N = 60
  const replies = await Promise.all(Array.from({ length: N }, () => send(gw.port, { path: '/x', agent, timeoutMs: 8000 })))
  agent.destroy()
  assert.ok(replies.every((r) => r.status === 503), 'every client sees the relayed 503')
  const tries = ups.reduce((a, u) => a + u.count(), 0)
  // 60 first tries arrive together; at most max(3, 0.2 × 60) = 12 of them may go on to retry,
  // each with at most 2 more tries. Without a budget this would be 180.
  assert.ok(tries >= N, `${tries} tries`)
  assert.ok(tries <= N + 2 * 12, `${tries} upstream tries exceed the budget`)
  const records = await gw.waitForRecords(N)
  const retried = records.filter((r) => r.attempts > 1).length
  assert.ok(retried >= 1 && retried <= 12, `${retried} requests retried`)
})

test('connect failures are retried by attempts alone: a refusing endpoint never fails a request when another is healthy', async () => {
  const dead = await env.lab('refuse')
  const okA = await env.lab('ok')
  const okB = await env.lab('ok')
  const gw = await env.gateway(oneUpstream([dead.url, okA.url, okB.url], {
    retries: { attempts: 3, budget: { ratio: 0, min_concurrency: 0 } },
    outlier_detection: { consecutive_failures: 1000, consecutive_5xx: 0 },
  }))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 50 })
  const replies = await Promise.all(Array.from({ length: 60 }, () => send(gw.port, { path: '/x', agent })))
  agent.destroy()
  assert.deepEqual([...new Set(replies.map((r) => r.status))], [200])
  const records = await gw.waitForRecords(60)
  assert.ok(records.some((r) => r.attempts === 2), 'some requests were retried after the refused try')
})
