// The keep-alive race against a backend with a 1 s keep-alive timeout: requests at random
// spacing 0–2 s for 20 s see zero 502s (the reused-connection retry and Keep-Alive hints).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { oneUpstream, testEnv } from '../helpers/gateway.ts'
import { send } from '../helpers/client.ts'

const env = testEnv()

for (const advertise of [false, true]) {
  test(`backend closing idle connections after 1 s${advertise ? ' (advertising Keep-Alive: timeout=1)' : ' (without advertising it)'}: zero 502s over 20 s of random spacing`, async () => {
    const up = await env.lab('keepalive-race', { keepAliveTimeoutMs: 1000, advertiseKeepAlive: advertise })
    const gw = await env.gateway(oneUpstream([up.url]))
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
    const deadline = performance.now() + 20_000
    const statuses: number[] = []
    // Four clients, each waiting a random 0–2 s between requests, so sends land all over the idle window.
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.random() * 2000))
        const r = await send(gw.port, { path: '/x', agent })
        statuses.push(r.status)
      }
    }))
    agent.destroy()
    assert.ok(statuses.length >= 30, `${statuses.length} requests`)
    assert.equal(statuses.filter((s) => s !== 200).length, 0, `non-200: ${statuses.filter((s) => s !== 200).join(',')}`)
    const records = await gw.waitForRecords(statuses.length)
    assert.equal(records.filter((r) => r.error !== null).length, 0)
  })
}
