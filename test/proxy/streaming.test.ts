/**
 * Streaming both ways with bounded memory: 100 MB down and 100 MB up through the gateway,
 * which runs in this process, while the process RSS is sampled.
 */
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import { send } from '../helpers/client.ts'
import { expectExchange } from '../helpers/expect.ts'
import { oneUpstream, testEnv } from '../helpers/gateway.ts'
import { peakRssGrowth, zeroChunks } from '../helpers/memory.ts'

const env = testEnv()

const SIZE = 100 * 1024 * 1024
const LIMIT = 64 * 1024 * 1024
const MiB = 1024 * 1024

async function warmGateway() {
  const lab = await env.lab('ok')
  const gw = await env.gateway(oneUpstream([lab.url]))
  // Warm up code paths and buffers so the baseline is not taken on a cold process.
  await send(gw.port, { path: '/bytes/4194304', discardBody: true })
  await send(gw.port, { method: 'POST', path: '/echo', body: Readable.from(zeroChunks(4 * MiB)), discardBody: true })
  return gw
}

describe('streaming', () => {
  test('a 100 MB response streams through with RSS growth under 64 MB', async () => {
    const gw = await warmGateway()
    const { result: reply, growth, samples } = await peakRssGrowth(() => send(gw.port, { path: `/bytes/${SIZE}`, discardBody: true, timeoutMs: 30_000 }))
    assert.equal(reply.error, undefined)
    assert.equal(reply.bytes, SIZE)
    const r = await expectExchange(gw, reply, { status: 200, error: null, attempts: 1 })
    assert.equal(r.bytes_sent, SIZE)
    assert.ok(samples > 3, `only ${samples} memory samples`)
    assert.ok(growth < LIMIT, `RSS grew by ${(growth / MiB).toFixed(1)} MiB during a ${SIZE / MiB} MiB download`)
  })

  test('a 100 MB upload streams through /echo with RSS growth under 64 MB', async () => {
    const gw = await warmGateway()
    const { result: reply, growth, samples } = await peakRssGrowth(() => send(gw.port, {
      method: 'POST', path: '/echo', body: Readable.from(zeroChunks(SIZE)), discardBody: true, timeoutMs: 30_000,
    }))
    assert.equal(reply.error, undefined)
    assert.equal(reply.bytes, SIZE)
    await expectExchange(gw, reply, { status: 200, error: null, attempts: 1 })
    assert.ok(samples > 3, `only ${samples} memory samples`)
    assert.ok(growth < LIMIT, `RSS grew by ${(growth / MiB).toFixed(1)} MiB during a ${SIZE / MiB} MiB upload`)
  })
})
