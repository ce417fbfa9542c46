import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { startLab } from '../../../src/lab/index.ts'
import { probeTcp } from '../../../src/doctor/probes/tcp.ts'
import { PORTICO_DEFAULTS, targetFromUrl } from '../../../src/doctor/probes/target.ts'

const v4 = (address: string) => ({ address, family: 4 as const })

test('ok with latency', async (t) => {
  const lab = await startLab('ok')
  t.after(() => lab.close())
  const { result, findings } = await probeTcp(targetFromUrl(lab.url, 'upstream', PORTICO_DEFAULTS), [v4('127.0.0.1')], 500)
  assert.equal(result.attempts[0].outcome, 'ok')
  assert.ok(result.attempts[0].ms >= 0)
  assert.equal(findings[0].id, 'tcp.ok')
})

test('refused is connection_refused', async (t) => {
  const lab = await startLab('refuse')
  t.after(() => lab.close())
  const { findings } = await probeTcp(targetFromUrl(lab.url, 'upstream', PORTICO_DEFAULTS), [v4('127.0.0.1')], 500)
  assert.equal(findings[0].cause, 'connection_refused')
})

test('a full backlog is connection_timeout within the bound', async (t) => {
  const lab = await startLab('connect-timeout')
  t.after(() => lab.close())
  const t0 = performance.now()
  const { findings } = await probeTcp(targetFromUrl(lab.url, 'upstream', PORTICO_DEFAULTS), [v4('127.0.0.1')], 300)
  const took = performance.now() - t0
  assert.ok(took >= 250 && took < 1500, `took ${took}`)
  assert.equal(findings[0].cause, 'connection_timeout')
})

test('localhost answering ::1 first while only 127.0.0.1 listens', async (t) => {
  const server = net.createServer((s) => s.destroy())
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  const port = (server.address() as net.AddressInfo).port
  const { findings } = await probeTcp(targetFromUrl(`http://localhost:${port}`, 'upstream', PORTICO_DEFAULTS), [{ address: '::1', family: 6 }, v4('127.0.0.1')], 500)
  assert.equal(findings[0].id, 'tcp.first_address_fails')
  assert.match(findings[0].evidence.join('\n'), /127\.0\.0\.1 only/)
})
