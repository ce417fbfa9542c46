// For every lab scenario: doctor against the backend alone, and against Portico in front of it; the top finding names the scenario's cause.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfigFile } from '../../src/config/load.ts'
import { Gateway } from '../../src/server/gateway.ts'
import { memoryAccessLog } from '../../src/observe/access-log.ts'
import { SCENARIOS, startLab, type Scenario } from '../../src/lab/index.ts'
import { runDoctor, type DoctorInput, type Report } from '../../src/doctor/run.ts'
import type { BypassResult } from '../../src/doctor/probes/bypass.ts'
import { causeOf, type CauseType } from '../../src/failures/causes.ts'
import { startDnsServer } from './probes/dns-server.ts'

/**
 * Portico timeouts per scenario, in ms, shorter than the fault they must catch and far
 * from the others, so a loaded machine only makes the faults more visible:
 * slow (p50 50 ms) against a 30 ms first-byte timeout, slow-body (a chunk every 100 ms)
 * against a 40 ms idle timeout, idle-mid-body (silent forever) against 200 ms.
 */
function timeouts(s: Scenario): { connect: number; response_header: number; idle: number } {
  return {
    connect: 500,
    response_header: s.name === 'slow' ? 30 : 400,
    idle: s.name === 'slow-body' ? 40 : s.name === 'idle-mid-body' ? 200 : 2000,
  }
}

/** Scenarios that are faults only under timeouts shorter than the Portico defaults. */
const TIMING = new Set(['slow', 'slow-body'])

function topFinding(report: Report): string {
  return JSON.stringify(report.findings.slice(0, 3), null, 1)
}

/** Causes below TCP: the TCP probe gets no connection, so doctor does not run the bypass comparison. */
const NO_CONNECTION = new Set<CauseType>(['dns_error', 'connection_refused', 'connection_timeout'])

/**
 * What Portico's answer to the bypass request shows for a scenario:
 * - `error`: Portico generated the error response, its status and `Proxy-Status: portico; error=<cause>`
 *   (or `destination_unavailable` once earlier probes got the only endpoint ejected);
 * - `cut`: the cause happens mid-body: a relayed 200 (`received-status=200`) whose body is cut short;
 * - `relayed`: Portico hides the fault (it retries the keep-alive race): a complete relayed 200;
 * - `either`: a timing fault that the probe may or may not hit (slow: some answers beat the 30 ms first-byte timeout).
 */
function portico(s: Scenario): 'error' | 'cut' | 'relayed' | 'either' {
  if (s.name === 'keepalive-race') return 'relayed'
  if (s.name === 'slow') return 'either'
  return causeOf(s.expect).status === null ? 'cut' : 'error'
}

/** Checks Portico's answer in the bypass comparison against what the scenario makes it do. */
function assertPorticoAnswer(s: Scenario, bypass: BypassResult): void {
  const r = bypass.proxied
  const own = bypass.proxyStatus.at(-1)
  const seen = `status ${r.status}, body ${r.bodyEnd}, Proxy-Status ${JSON.stringify(bypass.proxyStatus)}`
  assert.equal(own?.proxy, 'portico', `Portico's Proxy-Status member: ${seen}`)
  let want = portico(s)
  if (want === 'either') want = r.status === 200 ? 'relayed' : 'error'
  if (want === 'error') {
    assert.ok(own.error === s.expect || own.error === 'destination_unavailable', `error=${s.expect} expected: ${seen}`)
    assert.equal(r.status, causeOf(own.error as CauseType).status, seen)
    return
  }
  assert.equal(r.status, 200, seen)
  assert.equal(own.error, undefined, seen)
  assert.equal(own.receivedStatus, 200, seen)
  if (want === 'cut') assert.ok(r.bodyEnd === 'closed' || r.bodyEnd === 'reset', `a body cut short expected: ${seen}`)
  else assert.equal(r.bodyEnd, 'complete', seen)
}

test('for every lab scenario, doctor against the backend alone and via Portico: the top finding names the cause', { concurrency: true }, async (t) => {
  const dns = await startDnsServer({})
  t.after(() => dns.close())
  const dir = await mkdtemp(join(tmpdir(), 'portico-doctor-scenarios-'))
  t.after(() => rm(dir, { recursive: true, force: true }))

  await Promise.all(SCENARIOS.map((scenario) => t.test(`${scenario.name} → ${scenario.expect}`, async (st) => {
    const lab = await startLab(scenario.mode, scenario.options)
    st.after(() => lab.close())
    const to = timeouts(scenario)
    const file = join(dir, `${scenario.name}.yaml`)
    await writeFile(file, [
      'listeners:', '  - address: 127.0.0.1:0',
      'routes:', '  - upstream: lab',
      'upstreams:', '  lab:', `    endpoints: [ "${lab.url}" ]`,
      `    timeouts: { connect: ${to.connect}ms, response_header: ${to.response_header}ms, idle: ${to.idle}ms }`, '',
    ].join('\n'))
    const common: DoctorInput = {
      timeoutMs: 1000, samples: scenario.name === 'slow' ? 10 : 2, keepaliveLimitMs: 1000,
      dns: { lookup: dns.lookup, resolver: dns.resolver }, diskPaths: [],
    }

    // (a) The backend alone: judged against Portico's defaults, or against the short timeouts of the config for faults that need them.
    const alone = await runDoctor(TIMING.has(scenario.name) ? { ...common, config: file } : { ...common, upstream: [lab.url] })
    assert.equal(alone.findings[0]?.cause, scenario.expect, `backend alone: ${topFinding(alone)}`)
    assert.notEqual(alone.findings[0].severity, 'info')
    assert.equal(alone.findings[0].target, lab.url)

    // (b) Portico in front, started from the same config. A .invalid name must not reach the system resolver, so that one is diagnosed from the config only.
    let via: string | undefined
    if (scenario.mode !== 'dns-invalid') {
      const gw = new Gateway(await loadConfigFile(file), { accessLog: memoryAccessLog() })
      await gw.start()
      st.after(() => gw.stop())
      via = `http://127.0.0.1:${gw.listeners[0].address.port}/`
    }
    const proxied = await runDoctor({ ...common, config: file, ...(via ? { via } : {}) })
    assert.equal(proxied.system, 'portico')
    assert.equal(proxied.findings[0]?.cause, scenario.expect, `via Portico: ${topFinding(proxied)}`)
    assert.notEqual(proxied.findings[0].severity, 'info')
    const bypass = proxied.probes[0].bypass
    if (via === undefined || NO_CONNECTION.has(scenario.expect)) {
      assert.equal(bypass, undefined, 'no bypass comparison without a proxy or a TCP connection')
    } else {
      assert.ok(bypass, 'the bypass comparison ran')
      // Portico's own answer agrees with the diagnosis: the cause in Proxy-Status, or a relayed 200 when the header went out first.
      assertPorticoAnswer(scenario, bypass)
    }
  })))
})
