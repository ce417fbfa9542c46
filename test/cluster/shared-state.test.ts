// What one worker learns, the other uses: active health checks run once per host with
// their verdict applied by every worker, an ejection by one worker holds for the other,
// and concurrent cache misses over both workers make one upstream request.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { useTempDir } from '../config/temp-dir.ts'
import { adminGet, backend, freePort, getFresh, logLinesOf, many, startCluster, until, type Answer } from './cluster.ts'

const dir = useTempDir('portico-shared-')

interface EndpointView { address: string; state: string; reason: string | null; ejections: number; ejected_until: string | null }
const endpointsOf = async (c: Awaited<ReturnType<typeof startCluster>>): Promise<EndpointView[]> =>
  (await adminGet<{ upstreams: Array<{ endpoints: EndpointView[] }> }>(c, '/upstreams')).upstreams[0].endpoints

test('active health checks run once per host; the verdict reaches every worker', async () => {
  let probes = 0
  let healthy = true
  const a = await backend((req, res) => {
    if (req.url === '/healthz') {
      probes++
      res.statusCode = healthy ? 200 : 503
      return res.end()
    }
    res.end('a')
  })
  const b = await backend((req, res) => res.end(req.url === '/healthz' ? '' : 'b'))
  const intervalMs = 400
  const c = await startCluster(dir(), `routes: [{ upstream: u }]
upstreams:
  u:
    endpoints: ["${a.url}", "${b.url}"]
    health_check: { path: /healthz, interval: ${intervalMs}ms, timeout: 300ms, jitter: 0ms, unhealthy_threshold: 1, healthy_threshold: 1 }
`, 2, 'health.yaml')
  // Count the probes of endpoint a over a few intervals: one a interval for the host, not one per worker.
  const from = probes
  const t0 = Date.now()
  await new Promise((r) => setTimeout(r, 6 * intervalMs))
  const counted = probes - from
  const intervals = (Date.now() - t0) / intervalMs
  assert.ok(counted >= 3 && counted <= intervals + 1, `${counted} probes in ${intervals.toFixed(1)} intervals: once per interval for the host`)

  healthy = false
  const down = Date.now()
  for (;;) {
    const eps = await endpointsOf(c)
    if (eps[0].state === 'unhealthy') break
    assert.ok(Date.now() - down < 10_000, 'endpoint a goes down')
    await new Promise((r) => setTimeout(r, 50))
  }
  assert.ok(Date.now() - down <= 2 * intervalMs + 2000, 'within an interval of the failing probe (with a margin for a loaded machine)')
  const answers = await many(`${c.origin}/`, 30)
  assert.ok(answers.every((x) => x.status === 200 && x.body === 'b'), 'no worker sends a request to the endpoint the check found down')
  const lines = await logLinesOf(c, answers.map((x) => x.headers['x-request-id'] as string))
  assert.deepEqual([...new Set(lines.map((l) => l.worker))].sort(), [1, 2], 'both workers applied the verdict')
  assert.ok(lines.every((l) => l.attempts === 1), 'no try on the down endpoint')
})

test('an endpoint ejected on one worker\'s failures is ejected for the other, for the same time', async () => {
  const b = await backend((_req, res) => res.end('b'))
  const dead = await freePort()
  const c = await startCluster(dir(), `routes: [{ upstream: u }]
upstreams:
  u:
    endpoints: ["http://127.0.0.1:${dead}", "${b.url}"]
    outlier_detection: { consecutive_failures: 1, base_ejection_time: 60s }
`, 2, 'outlier.yaml')
  // Requests one at a time, each followed by a wait for the ejection, until the primary
  // ejects the dead endpoint: so the failures come from one worker only.
  const before: Answer[] = []
  let isEjected = false
  while (!isEjected) {
    assert.ok(before.length < 20, 'the dead endpoint is ejected')
    before.push(await getFresh(`${c.origin}/`))
    const t0 = Date.now()
    while (!(isEjected = (await endpointsOf(c))[0].state === 'ejected') && Date.now() - t0 < 1000) await new Promise((r) => setTimeout(r, 20))
  }
  const ejected = (await endpointsOf(c))[0]
  assert.equal(ejected.ejections, 1)
  assert.equal(ejected.reason, 'connection_refused')
  const beforeLines = await logLinesOf(c, before.map((x) => x.headers['x-request-id'] as string))
  const failedOn = new Set(beforeLines.filter((l) => l.attempts > 1).map((l) => l.worker))
  assert.ok(before.every((x) => x.status === 200), 'the retry on b answered the requests that found the dead endpoint')

  const after = await many(`${c.origin}/`, 30)
  assert.ok(after.every((x) => x.status === 200 && x.body === 'b'))
  const lines = await logLinesOf(c, after.map((x) => x.headers['x-request-id'] as string))
  const workers = new Set(lines.map((l) => l.worker))
  assert.deepEqual([...workers].sort(), [1, 2], 'both workers served')
  assert.ok(lines.every((l) => l.attempts === 1), 'no worker tries the ejected endpoint, including the one that never saw it fail')
  assert.equal(failedOn.size, 1, 'one worker saw the endpoint fail')
  assert.ok([...workers].some((w) => !failedOn.has(w)), 'the other worker, which never saw it fail, honours the ejection')
  const again = (await endpointsOf(c))[0]
  assert.equal(again.ejected_until, ejected.ejected_until, 'one ejection, one end time, for the whole host')
})

test('concurrent misses of one URL over two workers make one upstream request', async () => {
  let fetched = 0
  const up = await backend((_req, res) => {
    fetched++
    // Slow enough that every miss arrives while the one fetch runs.
    setTimeout(() => {
      res.setHeader('cache-control', 'max-age=60')
      res.end('stored body')
    }, 1500)
  })
  const c = await startCluster(dir(), `routes: [{ upstream: u, cache: { enabled: true, collapse_timeout: 20s } }]\nupstreams: { u: { endpoints: ["${up.url}"] } }\n`, 2, 'collapse.yaml')
  const answers = await Promise.all(Array.from({ length: 100 }, () => getFresh(`${c.origin}/page`, 30_000)))
  assert.ok(answers.every((x) => x.status === 200 && x.body === 'stored body'), 'every request got the response')
  assert.equal(fetched, 1, 'one upstream request for 100 misses over two workers')
  const lines = await logLinesOf(c, answers.map((x) => x.headers['x-request-id'] as string))
  assert.deepEqual([...new Set(lines.map((l) => l.worker))].sort(), [1, 2], 'both workers had misses')
  // Misses that arrived while the fetch ran were collapsed onto it; any that came after it are plain hits.
  const hits = lines.filter((l) => /^portico; hit/.test(l.cache ?? ''))
  assert.equal(hits.length, 99, 'every request but the fetching one was served from the one fetch')
  assert.ok(hits.filter((l) => /collapsed/.test(l.cache ?? '')).length >= 50, 'most of them waited for it')
  const leases = await adminGet<{ cache_leases: { granted: number; filled: number } }>(c, '/workers')
  assert.equal(leases.cache_leases.granted, 1)
  assert.ok(leases.cache_leases.filled >= 1, 'the other worker was filled with the fetched response')
})

test('upstream names are resolved once per host, not once per worker', async () => {
  const { startDnsServer } = await import('../doctor/probes/dns-server.ts')
  const dns = await startDnsServer({ 'app.test': { a: ['127.0.0.1'], ttl: 60 } })
  const up = await backend((_req, res) => res.end('named'))
  const c = await startCluster(dir(), `routes: [{ upstream: u }]
upstreams:
  u:
    endpoints: ["http://app.test:${up.port}"]
    dns: { resolvers: ["127.0.0.1:${dns.port}"] }
`, 2, 'dns.yaml')
  try {
    const answers = await many(`${c.origin}/`, 20)
    assert.ok(answers.every((x) => x.status === 200 && x.body === 'named'), 'both workers reach the endpoint the name resolves to')
    const lines = await logLinesOf(c, answers.map((x) => x.headers['x-request-id'] as string))
    assert.deepEqual([...new Set(lines.map((l) => l.worker))].sort(), [1, 2])
    // One A and one AAAA query for the host; a no-answer AAAA is kept 1 s, so a worker
    // starting later may ask it once more. One resolver a process would make 6 or more.
    assert.ok(dns.queries >= 2 && dns.queries <= 4, `${dns.queries} queries for three processes (primary and two workers)`)
    const w = await adminGet<{ dns_queries: number }>(c, '/workers')
    assert.equal(w.dns_queries, dns.queries)
  } finally {
    await dns.close()
  }
})

test('/failures merges both workers\' rings, each failure with its worker', async () => {
  const dead = await freePort()
  const c = await startCluster(dir(), `routes: [{ upstream: u }]\nupstreams: { u: { endpoints: ["http://127.0.0.1:${dead}"], outlier_detection: { consecutive_failures: 0 } } }\n`, 2, 'failures.yaml')
  const answers = await many(`${c.origin}/f`, 30)
  assert.ok(answers.every((x) => x.status === 502 && /error=connection_refused/.test(String(x.headers['proxy-status']))))
  const body = await adminGet<{ total: number; failures: Array<{ request_id: string; error: string; worker: number; ts: string }> }>(c, '/failures')
  assert.equal(body.total, 30)
  assert.equal(body.failures.length, 30)
  assert.deepEqual(new Set(body.failures.map((f) => f.request_id)), new Set(answers.map((x) => x.headers['x-request-id'])))
  assert.deepEqual([...new Set(body.failures.map((f) => f.worker))].sort(), [1, 2])
  assert.deepEqual(body.failures.map((f) => f.ts), body.failures.map((f) => f.ts).sort(), 'oldest first')
})
