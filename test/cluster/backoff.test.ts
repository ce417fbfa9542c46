// A worker that keeps dying right after its start is replaced after a growing back-off;
// the first death is replaced at once. The primary runs in this test's process.
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { parseConfig } from '../../src/config/load.ts'
import { Primary } from '../../src/cluster/primary.ts'
import { until } from './cluster.ts'

test('replaced at once, then after 100 ms, 200 ms ... while it keeps dying within 5 s of its start', async () => {
  const config = parseConfig(`listeners: [{ address: "127.0.0.1:0" }]
routes: [{ upstream: u }]
upstreams: { u: { endpoints: ["http://127.0.0.1:1"] } }
access_log: { path: /dev/null }
`, 'backoff.yaml')
  const primary = new Primary(config, { workers: 1 })
  after(() => primary.stop(0))
  await primary.start()
  const slot = primary.slots[0]
  const gaps: number[] = []
  for (let i = 1; i <= 3; i++) {
    await until(`worker ready (${i})`, () => slot.ready, 20_000)
    const pid = slot.pid!
    process.kill(pid, 'SIGKILL')
    await until(`replacement ${i}`, () => slot.restarts === i, 20_000)
    assert.notEqual(slot.pid, pid)
    gaps.push(slot.startedAt - slot.lastExit!.at)
    assert.equal(slot.lastExit!.signal, 'SIGKILL')
    assert.equal(slot.restarts, i)
  }
  assert.ok(gaps[0] < 100, `the first death is replaced at once (${gaps[0]} ms)`)
  assert.ok(gaps[1] >= 100, `the second quick death waits 100 ms (${gaps[1]} ms)`)
  assert.ok(gaps[2] >= 200, `the third waits 200 ms (${gaps[2]} ms)`)
  await until('the last replacement serves', () => slot.ready, 20_000)
})
