// Worker processes as users run them (`portico serve --workers 2`): requests reach both
// workers, the admin API and /metrics add both up, a reload reaches both or changes
// nothing, and SIGTERM drains both.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { test } from 'node:test'
import { useTempDir } from '../config/temp-dir.ts'
import { portico } from '../admin/serve-process.ts'
import { adminGet, backend, getFresh, logLinesOf, many, startCluster, until } from './cluster.ts'

const dir = useTempDir('portico-workers-')

test('requests reach both workers; /upstreams and /metrics add both up', async () => {
  const up = await backend((_req, res) => res.end('{"server":"a"}'))
  const c = await startCluster(dir(), `routes: [{ upstream: a }]\nupstreams: { a: { endpoints: ["${up.url}"] } }\n`)
  const answers = await many(`${c.origin}/x`, 60)
  assert.ok(answers.every((a) => a.status === 200), 'every request answered 200')
  const lines = await logLinesOf(c, answers.map((a) => a.headers['x-request-id'] as string))
  assert.equal(lines.length, 60)
  const perWorker = new Map<number, number>()
  for (const l of lines) perWorker.set(l.worker ?? 0, (perWorker.get(l.worker ?? 0) ?? 0) + 1)
  assert.deepEqual([...perWorker.keys()].sort(), [1, 2], `both workers served (log: ${JSON.stringify([...perWorker])})`)

  const workers = await adminGet<{ workers: Array<{ worker: number; pid: number; ready: boolean }> }>(c, '/workers')
  assert.equal(workers.workers.length, 2)
  assert.ok(workers.workers.every((w) => w.ready && w.pid > 0 && w.pid !== c.process.child.pid), 'two worker processes besides the primary')

  const ups = await adminGet<{ upstreams: Array<{ endpoints: Array<{ requests: number; state: string; workers: Array<{ worker: number; requests: number }> }> }> }>(c, '/upstreams')
  const ep = ups.upstreams[0].endpoints[0]
  assert.equal(ep.requests, 60, 'requests summed over the workers')
  assert.equal(ep.state, 'healthy')
  assert.deepEqual(ep.workers.map((w) => [w.worker, w.requests]), [...perWorker].sort((a, b) => a[0] - b[0]), 'each worker\'s share as the log counts it')

  const metrics = await (await fetch(`${c.admin}/metrics`)).text()
  const total = /portico_requests_total\{route="route0",upstream="a",status_class="2xx"\} (\d+)/.exec(metrics)
  assert.equal(Number(total?.[1]), 60, 'one scrape counts the requests of both workers')
  assert.match(metrics, /portico_request_duration_seconds_count\{route="route0",upstream="a"\} 60|portico_request_duration_seconds_count 60/)
  assert.match(metrics, /portico_upstream_endpoint_healthy\{upstream="a",endpoint="127\.0\.0\.1:\d+"\} 1\n/, 'health is not summed')
  assert.match(metrics, /portico_workers\{state="ready"\} 2\n/)
  assert.match(metrics, /portico_worker_restarts 0\n/)

  // The dashboard's live view sums both workers too.
  const stats = await adminGet<{ upstreams: Array<{ endpoints: Array<{ requests_total: number; state: string }> }>; routes: Array<{ requests_hour: number }> }>(c, '/stats')
  assert.equal(stats.upstreams[0].endpoints[0].requests_total, 60)
  assert.equal(stats.upstreams[0].endpoints[0].state, 'up')
  assert.equal(stats.routes[0].requests_hour, 60, 'the live rings of both workers, summed')
  const page = await fetch(`${c.admin}/`)
  assert.equal(page.status, 200)
  assert.match(page.headers.get('content-type') ?? '', /text\/html/)
})

test('reload: a broken file changes nothing anywhere; a good one reaches both workers before /reload answers', async () => {
  const a = await backend((_req, res) => res.end('a'))
  const b = await backend((_req, res) => res.end('b'))
  const body = (to: string) => `routes: [{ upstream: ${to} }]\nupstreams:\n  a: { endpoints: ["${a.url}"] }\n  b: { endpoints: ["${b.url}"] }\n`
  const c = await startCluster(dir(), body('a'), 2, 'reload.yaml')
  const text = await readFile(c.file, 'utf8')

  await writeFile(c.file, text.replace('upstream: a }', 'upstream: nowhere }'))
  const refused = await fetch(`${c.admin}/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.equal(refused.status, 400)
  const r1 = await refused.json() as { ok: boolean; refused: string; problems: Array<{ file: string; line: number; column: number; message: string }> }
  assert.equal(r1.refused, 'config')
  assert.equal(r1.problems[0].file, c.file)
  assert.equal(r1.problems[0].line, 4, 'the route line')
  assert.ok(r1.problems[0].column > 1)
  assert.match(r1.problems[0].message, /unknown upstream "nowhere"/)
  const still = await many(`${c.origin}/`, 20)
  assert.ok(still.every((x) => x.status === 200 && x.body === 'a'), 'both workers keep the running config')

  await writeFile(c.file, text.replace('upstream: a }', 'upstream: b }'))
  const ok = await fetch(`${c.admin}/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.equal(ok.status, 200)
  const r2 = await ok.json() as { ok: boolean; workers: Array<{ ok: boolean }> }
  assert.deepEqual(r2.workers.map((w) => w.ok), [true, true], 'both workers applied it before the answer')
  const after = await many(`${c.origin}/`, 30)
  assert.ok(after.every((x) => x.status === 200 && x.body === 'b'), 'no worker serves the old route once /reload answered')
  const lines = await logLinesOf(c, after.map((x) => x.headers['x-request-id'] as string))
  assert.deepEqual([...new Set(lines.map((l) => l.worker))].sort(), [1, 2], 'both workers were asked')

  // SIGHUP goes through the same path: the file is read once, by the primary.
  await writeFile(c.file, text)
  c.process.child.kill('SIGHUP')
  await until('the SIGHUP reload', () => c.process.stderr().includes('in 2 workers'))
  const back = await many(`${c.origin}/`, 20)
  assert.ok(back.every((x) => x.body === 'a'))
})

test('SIGTERM drains both workers in parallel: requests in flight finish, their lines are written, exit 0', async () => {
  let seen = 0
  const up = await backend((_req, res) => {
    seen++
    setTimeout(() => res.end('slow'), 600)
  })
  const c = await startCluster(dir(), `routes: [{ upstream: a }]\nupstreams: { a: { endpoints: ["${up.url}"] } }\nshutdown: { drain_timeout: 10s }\n`, 2, 'drain.yaml')
  const inflight = Array.from({ length: 16 }, () => getFresh(`${c.origin}/slow`))
  await until('16 requests at the backend', () => seen >= 16)
  const t0 = Date.now()
  c.process.child.kill('SIGTERM')
  const answers = await Promise.all(inflight)
  assert.ok(answers.every((a) => a.status === 200 && a.body === 'slow'), 'every request in flight finished')
  const { code } = await c.process.exited
  assert.equal(code, 0)
  assert.ok(Date.now() - t0 < 5000, 'the workers drained in parallel, not one after the other')
  const lines = await logLinesOf(c, answers.map((a) => a.headers['x-request-id'] as string))
  assert.equal(lines.length, 16, 'no line lost at the drain')
  assert.deepEqual([...new Set(lines.map((l) => l.worker))].sort(), [1, 2], 'both workers had requests in flight')
})

test('quick mode: --workers 2 with port 0 binds one port for both; JSON lines on standard output stay whole', async () => {
  const up = await backend((_req, res) => res.end('quick'))
  const p = portico(['serve', '--listen', '127.0.0.1:0', '--to', up.url, '--workers', '2'])
  await until('the listening line', () => /listening on http:\/\/127\.0\.0\.1:\d+/.test(p.stderr()), 30_000)
  const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(p.stderr())![1])
  assert.notEqual(port, 0)
  assert.match(p.stderr(), /2 workers \(reusePort: the kernel spreads connections\)/)
  const answers = await many(`http://127.0.0.1:${port}/q`, 40)
  assert.ok(answers.every((a) => a.status === 200 && a.body === 'quick'))
  p.child.kill('SIGTERM')
  assert.equal((await p.exited).code, 0)
  const lines = p.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { worker: number; path: string })
  assert.equal(lines.length, 40, 'one whole line per request')
  assert.deepEqual([...new Set(lines.map((l) => l.worker))].sort(), [1, 2], 'both workers served on the one port')
})

test('--workers refuses what is neither auto nor a count', async () => {
  const p = portico(['serve', '--listen', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--workers', 'many'])
  const { code } = await p.exited
  assert.equal(code, 2)
  assert.match(p.stderr(), /--workers many: expected "auto" or a number of worker processes from 1 to 256/)
})

test('reload: a new listener address held by another program refuses the reload before any worker changes', async () => {
  const up = await backend((_req, res) => res.end('up'))
  const held = await backend((_req, res) => res.end('someone else'))
  const c = await startCluster(dir(), `routes: [{ upstream: a }]\nupstreams: { a: { endpoints: ["${up.url}"] } }\n`, 2, 'listen.yaml')
  const text = await readFile(c.file, 'utf8')
  await writeFile(c.file, text.replace(/listeners: \[\{ address: "([^"]+)" \}\]/, `listeners: [{ address: "$1" }, { address: "127.0.0.1:${held.port}" }]`))
  const res = await fetch(`${c.admin}/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.equal(res.status, 400)
  const body = await res.json() as { error: string; workers: unknown[] }
  assert.match(body.error, /cannot listen: .*EADDRINUSE/)
  assert.deepEqual(body.workers, [], 'no worker was asked')
  assert.equal((await getFresh(`${held.url}/`)).body, 'someone else', 'the other program keeps its port')
  const still = await many(`${c.origin}/`, 10)
  assert.ok(still.every((x) => x.status === 200 && x.body === 'up'))
})

test('portico reload -c FILE against a primary: validated, applied by both workers, said so', async () => {
  const a = await backend((_req, res) => res.end('a'))
  const c = await startCluster(dir(), `routes: [{ upstream: a }]\nupstreams: { a: { endpoints: ["${a.url}"] } }\n`, 2, 'cli-reload.yaml')
  const r = portico(['reload', '-c', c.file])
  const { code } = await r.exited
  assert.equal(code, 0, r.stderr())
  assert.match(r.stdout(), /^reloaded: 1 route; upstreams kept a \(in 2 workers\)\n/)
})
