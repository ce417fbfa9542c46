// Tests of readLog summaries (since filter, bursts, samples), correlation with a backend log, and checkLogs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { readLog, correlate, checkLogs, findBursts } from '../../../src/doctor/logs/index.ts'

const FIX = resolve(import.meta.dirname, '../../fixtures/logs')

async function tempLog(t: { after: (fn: () => Promise<void>) => void }, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-logs-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'access.log')
  await writeFile(path, text)
  return path
}

/** A Portico JSON line at a time, with a cause or none. */
function porticoLine(ts: Date, i: number, error: string | null, endpoint = '127.0.0.1:3000'): string {
  return JSON.stringify({
    ts: ts.toISOString(), request_id: `req-${i}`, status: error ? 502 : 200, upstream: 'api', endpoint, error,
  })
}

test('Portico log: counts by cause and endpoint, relayed 502 not counted, samples with line numbers', async () => {
  const s = await readLog(join(FIX, 'portico.jsonl'))
  assert.equal(s.format, 'portico-json')
  assert.equal(s.lines, 4)
  assert.equal(s.events, 4)
  assert.equal(s.failures, 2)
  assert.deepEqual(s.byCause, { connection_refused: 1, http_response_timeout: 1 })
  assert.deepEqual(s.byEndpoint, { '127.0.0.1:3001': 1, '127.0.0.1:3000': 1 })
  assert.deepEqual(s.causes.find((c) => c.cause === 'connection_refused')?.samples.map((x) => x.line), [2])
  assert.deepEqual(s.firstSeen, new Date('2026-11-20T10:15:32Z'))
  assert.deepEqual(s.lastSeen, new Date('2026-11-20T10:15:40Z'))
  assert.deepEqual(s.byMinute, { '2026-11-20T10:15': 2 })
  assert.equal(s.failedRequests.length, 2)
})

test('nginx error.log and access.log summaries', async () => {
  const e = await readLog(join(FIX, 'nginx-error.log'))
  assert.equal(e.format, 'nginx-error')
  assert.deepEqual(e.byCause, { connection_refused: 2, http_response_timeout: 1 })
  assert.equal(e.causes[0].cause, 'connection_refused')
  assert.deepEqual(e.causes[0].samples.map((x) => x.line), [2, 4])
  const a = await readLog(join(FIX, 'nginx-access-combined.log'))
  assert.equal(a.format, 'nginx-access')
  assert.deepEqual(a.byCause, { unclassified: 2 })
  assert.deepEqual(a.causes[0].byStatus, { 502: 1, 504: 1 })
})

test('since filtering', async () => {
  const s = await readLog(join(FIX, 'nginx-access-upstream.log'), { since: new Date('2026-11-20T10:16:00Z') })
  assert.equal(s.lines, 3)
  assert.equal(s.events, 1)
  assert.equal(s.failures, 1)
  assert.deepEqual(s.causes[0].byEndpoint, { '127.0.0.1:3001': 1 })
})

test('a given log_format is used; unparsed lines are counted', async (t) => {
  const path = await tempLog(t, '2026-11-20T10:15:32+00:00 504 10.0.0.3:80\ngarbage\n2026-11-20T10:15:33+00:00 200 10.0.0.3:80\n')
  const s = await readLog(path, { logFormat: '$time_iso8601 $status $upstream_addr' })
  assert.equal(s.format, 'nginx-access')
  assert.equal(s.failures, 1)
  assert.equal(s.unparsed, 1)
  assert.deepEqual(s.byEndpoint, { '10.0.0.3:80': 1 })
})

test('bursts: a minute with ≥5× the median rate, over a span with quiet minutes', async (t) => {
  const base = Date.parse('2026-11-20T10:00:00Z')
  const out: string[] = []
  let i = 0
  for (let m = 0; m < 10; m++) {
    const errors = m === 6 ? 12 : 2
    for (let k = 0; k < errors; k++) out.push(porticoLine(new Date(base + m * 60_000 + k * 1000), i++, 'connection_terminated'))
    out.push(porticoLine(new Date(base + m * 60_000 + 50_000), i++, null))
  }
  const s = await readLog(await tempLog(t, out.join('\n') + '\n'))
  assert.equal(s.failures, 9 * 2 + 12)
  assert.deepEqual(s.bursts, [{ minute: '2026-11-20T10:06', count: 12, median: 2 }])
  assert.equal(s.causes[0].peakMinute, '2026-11-20T10:06')
  assert.equal(s.causes[0].samples.length, 3)
  const f = checkLogs(s, { system: 'portico' })
  assert.ok(f[0].evidence.some((x) => x.startsWith('burst at 2026-11-20T10:06')))
})

test('findBursts: no baseline under 3 minutes; a steady rate is no burst', () => {
  const t0 = new Date('2026-11-20T10:00:00Z')
  assert.deepEqual(findBursts({ '2026-11-20T10:00': 50 }, t0, new Date('2026-11-20T10:01:00Z')), [])
  const steady = { '2026-11-20T10:00': 8, '2026-11-20T10:01': 9, '2026-11-20T10:02': 8 }
  assert.deepEqual(findBursts(steady, t0, new Date('2026-11-20T10:02:30Z')), [])
  // Errors in one minute of an hour: the median is 0, so 5 or more is a burst.
  assert.equal(findBursts({ '2026-11-20T10:30': 5 }, t0, new Date('2026-11-20T10:59:00Z')).length, 1)
  assert.equal(findBursts({ '2026-11-20T10:30': 4 }, t0, new Date('2026-11-20T10:59:00Z')).length, 0)
})

test('correlate: the backend saw the timed-out request, never the refused one', async () => {
  const s = await readLog(join(FIX, 'portico.jsonl'))
  const c = await correlate(s, join(FIX, 'backend.log'))
  assert.equal(c.checked, 2)
  assert.deepEqual(c.seen, ['1b3d5f7a9c1e4b2d8f0a2c4e6a8c0e2f'])
  assert.deepEqual(c.notSeen, ['0a2b4c6d8e0f4a1b9c3d5e7f9a1b3c5d'])
  assert.deepEqual(c.byCause, { connection_refused: { seen: 0, notSeen: 1 }, http_response_timeout: { seen: 1, notSeen: 0 } })
  const f = checkLogs(s, { system: 'portico', correlation: c })
  assert.ok(f.find((x) => x.cause === 'connection_refused')?.evidence.some((e) => /0 of 1 failed request IDs reached the backend/.test(e)))
})

test('checkLogs: one finding per cause ranked by count, fixes in the system vocabulary', async () => {
  const n = await readLog(join(FIX, 'nginx-error.log'))
  const f = checkLogs(n, { system: 'nginx' })
  assert.deepEqual(f.map((x) => x.id), ['logs.connection_refused', 'logs.http_response_timeout'])
  assert.ok(Math.abs(f[0].likelihood - 2 / 3) < 1e-9)
  assert.equal(f[0].severity, 'error')
  assert.ok(f[0].evidence.some((e) => e === 'endpoints: 127.0.0.1:3000 (2)'))
  assert.ok(f[0].evidence.some((e) => e.endsWith('nginx-error.log:2: ' + n.causes[0].samples[0].raw)))
  assert.match(f[1].fix, /proxy_read_timeout/)
  const p = await readLog(join(FIX, 'portico.jsonl'))
  const pf = checkLogs(p, { system: 'portico' })
  assert.match(pf.find((x) => x.cause === 'http_response_timeout')?.fix ?? '', /upstreams\.api\.timeouts\.response_header/)
  assert.match(pf.find((x) => x.cause === 'connection_refused')?.fix ?? '', /upstreams\.api\.retries\.attempts/)
  const a = checkLogs(await readLog(join(FIX, 'nginx-access-combined.log')), { system: 'nginx' })
  assert.equal(a[0].id, 'logs.unclassified')
  assert.equal(a[0].cause, null)
  assert.match(a[0].fix, /error\.log/)
})

test('checkLogs: nginx fix names the detail (ephemeral ports → keepalive)', async (t) => {
  const line = '2026/11/20 10:15:32 [crit] 1234#1234: *567 connect() to 127.0.0.1:3000 failed (99: Cannot assign requested address) while connecting to upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:3000/", host: "localhost"'
  const s = await readLog(await tempLog(t, `${line}\n`))
  const [f] = checkLogs(s, { system: 'nginx' })
  assert.equal(f.cause, 'connection_limit_reached')
  assert.match(f.fix, /keepalive 32;/)
  assert.match(f.fix, /proxy_set_header Connection ""/)
})

test('an empty log has no findings; a missing log throws', async (t) => {
  const s = await readLog(await tempLog(t, ''))
  assert.equal(s.format, 'unknown')
  assert.deepEqual(checkLogs(s, { system: 'nginx' }), [])
  await assert.rejects(readLog(join(FIX, 'does-not-exist.log')), { code: 'ENOENT' })
})
