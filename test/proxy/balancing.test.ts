/**
 * Load balancing through a running gateway, told apart by the `server` name each 'ok'
 * lab endpoint reports: round_robin, least_request and random, and backup endpoints.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { describe, test } from 'node:test'
import { send } from '../helpers/client.ts'
import { expectExchange } from '../helpers/expect.ts'
import { oneUpstream, testEnv, type TestGateway } from '../helpers/gateway.ts'

const env = testEnv()

/** Sends `count` GETs, `concurrency` at a time, and counts answers by lab server name. */
async function spread(gw: TestGateway, count: number, concurrency = 1, path = '/'): Promise<Record<string, number>> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  env.defer(() => agent.destroy())
  const counts: Record<string, number> = {}
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++
      const reply = await send(gw.port, { agent, path })
      await expectExchange(gw, reply, { status: 200, error: null, attempts: 1 })
      const { server } = reply.json<{ server: string }>()
      counts[server] = (counts[server] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return counts
}

describe('load balancing', () => {
  test('round_robin follows the weights exactly: 3:1 over 40 requests is 30 and 10', async () => {
    const heavy = await env.lab('ok', { name: 'heavy' })
    const light = await env.lab('ok', { name: 'light' })
    const gw = await env.gateway(oneUpstream([{ url: heavy.url, weight: 3 }, { url: light.url, weight: 1 }], { load_balancing: 'round_robin' }))
    assert.deepEqual(await spread(gw, 40), { heavy: 30, light: 10 })
  })

  test('round_robin interleaves (smooth weighted): no more than 3 heavy picks in a row', async () => {
    const heavy = await env.lab('ok', { name: 'heavy' })
    const light = await env.lab('ok', { name: 'light' })
    const gw = await env.gateway(oneUpstream([{ url: heavy.url, weight: 3 }, { url: light.url, weight: 1 }]))
    const order: string[] = []
    for (let i = 0; i < 12; i++) order.push((await send(gw.port)).json<{ server: string }>().server)
    assert.doesNotMatch(order.join(','), /heavy,heavy,heavy,heavy/)
    assert.equal(order.filter((s) => s === 'light').length, 3)
  })

  test('least_request sends fewer requests to a slow endpoint', async () => {
    const slow = await env.lab('slow', { name: 'slow', latencyMs: 150 })
    const fast = await env.lab('ok', { name: 'fast' })
    const gw = await env.gateway(oneUpstream([slow.url, fast.url], { load_balancing: 'least_request' }))
    const counts = await spread(gw, 48, 6)
    const s = counts.slow ?? 0
    const f = counts.fast ?? 0
    assert.equal(s + f, 48)
    assert.ok(s < f, `slow got ${s}, fast got ${f}`)
    // Six in flight against a 150 ms endpoint: the fast one should take the clear majority.
    assert.ok(f >= 2 * s, `slow got ${s}, fast got ${f}: expected at least 2:1 for the fast endpoint`)
  })

  test('random follows the weights roughly: 3:1 over 200 requests', async () => {
    const heavy = await env.lab('ok', { name: 'heavy' })
    const light = await env.lab('ok', { name: 'light' })
    const gw = await env.gateway(oneUpstream([{ url: heavy.url, weight: 3 }, { url: light.url, weight: 1 }], { load_balancing: 'random' }))
    const counts = await spread(gw, 200, 4)
    const share = (counts.heavy ?? 0) / 200
    // Expected 0.75, standard deviation about 0.031: ±0.15 is about five deviations.
    assert.ok(share > 0.6 && share < 0.9, `heavy share ${share}: ${JSON.stringify(counts)}`)
    assert.ok((counts.light ?? 0) > 0)
  })

  test('a backup endpoint gets no request while a primary is available', async () => {
    const a = await env.lab('ok', { name: 'a' })
    const b = await env.lab('ok', { name: 'b' })
    const spare = await env.lab('ok', { name: 'spare' })
    const gw = await env.gateway(oneUpstream([a.url, b.url, { url: spare.url, backup: true }]))
    assert.deepEqual(await spread(gw, 10), { a: 5, b: 5 })
  })

  test('a backup endpoint takes the retry when the primary fails, then every request while it is ejected', async () => {
    const dead = await env.lab('refuse')
    const spare = await env.lab('ok', { name: 'spare' })
    const gw = await env.gateway(oneUpstream([dead.url, { url: spare.url, backup: true }], {
      retries: { attempts: 2 }, outlier_detection: { consecutive_failures: 1 },
    }))
    const first = await send(gw.port)
    await expectExchange(gw, first, { status: 200, error: null, attempts: 2 })
    assert.equal(first.json<{ server: string }>().server, 'spare')
    const second = await send(gw.port)
    await expectExchange(gw, second, { status: 200, error: null, attempts: 1 })
    assert.equal(second.json<{ server: string }>().server, 'spare')
  })
})
