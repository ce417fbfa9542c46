// --via: Portico in front of lab backends, compared with direct requests.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { quickConfig } from '../../src/config/quick.ts'
import { Gateway } from '../../src/server/gateway.ts'
import { startLab } from '../../src/lab/index.ts'
import { runDoctor } from '../../src/doctor/run.ts'
import { parseProxyStatus } from '../../src/doctor/probes/bypass.ts'

async function portico(t: import('node:test').TestContext, to: string): Promise<string> {
  const gw = new Gateway(quickConfig({ listen: '127.0.0.1:0', to: [to] }), { accessLog: { write() {}, flush: async () => {} } })
  await gw.start()
  t.after(() => gw.stop())
  return `http://127.0.0.1:${gw.listeners[0].address.port}/`
}

test('Proxy-Status parsing (RFC 9209)', () => {
  assert.deepEqual(parseProxyStatus('portico; error=connection_refused; details="a, b", cdn; received-status=502'), [
    { proxy: 'portico', error: 'connection_refused', details: 'a, b' },
    { proxy: 'cdn', receivedStatus: 502 },
  ])
})

test('backend-side: direct and via Portico fail the same way; Proxy-Status names the cause', async (t) => {
  const lab = await startLab('reset-before-header')
  t.after(() => lab.close())
  const via = await portico(t, lab.url)
  const report = await runDoctor({ upstream: [lab.url], via, timeoutMs: 1000, samples: 1, keepaliveLimitMs: 300, diskPaths: [] })
  const bypass = report.probes[0].bypass
  assert.equal(bypass?.verdict, 'backend-side')
  assert.ok((bypass?.proxied.status ?? 0) >= 502)
  // Portico may retry and then report the pool empty; the finding must carry whatever Proxy-Status named.
  const named = bypass?.proxyStatus.find((m) => m.error)?.error
  assert.ok(named === 'connection_terminated' || named === 'destination_unavailable', String(named))
  // Confirming the probe's own cause, the comparison is folded into that finding as evidence; otherwise it stands alone.
  const carrier = report.findings.find((x) => x.id === 'bypass.backend_side') ?? report.findings.find((x) => x.evidence.some((e) => e.startsWith('through the proxy: ')))
  assert.equal(carrier?.cause, named)
})

test('same: a healthy backend through Portico gives the same answer', async (t) => {
  const ok = await startLab('ok', { name: 'fixed' })
  t.after(() => ok.close())
  const via = await portico(t, ok.url)
  const report = await runDoctor({ upstream: [ok.url], via, timeoutMs: 1000, samples: 1, keepaliveLimitMs: 300, diskPaths: [] })
  const b = report.probes[0].bypass
  assert.equal(b?.verdict, 'same', JSON.stringify(b?.differences))
})

test('proxy-side: the backend answers directly, Portico points elsewhere', async (t) => {
  const ok = await startLab('ok')
  const dead = await startLab('refuse')
  t.after(() => Promise.all([ok.close(), dead.close()]))
  const via = await portico(t, dead.url)
  const report = await runDoctor({ upstream: [ok.url], via, timeoutMs: 1000, samples: 1, keepaliveLimitMs: 300, diskPaths: [] })
  assert.equal(report.probes[0].bypass?.verdict, 'proxy-side')
  assert.equal(report.findings[0].id, 'bypass.proxy_side')
  assert.equal(report.findings[0].cause, 'connection_refused')
  assert.match(report.findings[0].evidence.join('\n'), /Proxy-Status: portico; error=connection_refused/)
})
