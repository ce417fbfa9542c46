// Supervision and the shared access log under load: a worker killed with SIGKILL is
// replaced while the other keeps serving its connections without a failure, and two
// workers writing one access log never break a line.
import assert from 'node:assert/strict'
import http from 'node:http'
import type { Socket } from 'node:net'
import { test } from 'node:test'
import { useTempDir } from '../config/temp-dir.ts'
import { adminGet, backend, readLog, startCluster, until } from './cluster.ts'

const dir = useTempDir('portico-supervision-')

interface WorkersBody { workers: Array<{ worker: number; pid: number; ready: boolean; restarts: number; last_exit: { signal: string | null } | null }> }

test('kill -9 of one worker under 200 req/s: no failure on the other worker\'s connections, and it is replaced', async (t) => {
  const up = await backend((_req, res) => res.end('ok'))
  const c = await startCluster(dir(), `routes: [{ upstream: u }]\nupstreams: { u: { endpoints: ["${up.url}"] } }\n`, 2, 'kill.yaml')
  const before = await adminGet<WorkersBody>(c, '/workers')
  const victim = before.workers[0]

  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  const socketIds = new WeakMap<Socket, number>()
  let sockets = 0
  const results: Array<{ socket: number; at: number; id?: string; error?: string }> = []
  const pending: Promise<void>[] = []
  const t0 = Date.now()
  let killedAt = 0
  // 200 requests a second for 5 seconds (caught up on each timer tick), over up to 16 keep-alive connections.
  let i = 0
  const send = (): void => {
    i++
    pending.push(new Promise<void>((resolve) => {
      const r: { socket: number; at: number; id?: string; error?: string } = { socket: -1, at: Date.now() - t0 }
      results.push(r)
      const req = http.get(`${c.origin}/n${i}`, { agent, timeout: 5000 }, (res) => {
        res.resume()
        res.on('end', () => {
          if (res.statusCode === 200) r.id = res.headers['x-request-id'] as string
          else r.error = `status ${res.statusCode}`
          resolve()
        })
      })
      req.on('socket', (s: Socket) => {
        if (!socketIds.has(s)) socketIds.set(s, sockets++)
        r.socket = socketIds.get(s)!
      })
      req.on('timeout', () => req.destroy(new Error('timeout')))
      req.on('error', (e: Error & { code?: string }) => {
        r.error = e.code ?? e.message
        resolve()
      })
    }))
  }
  for (let elapsed = 0; elapsed < 5000; elapsed = Date.now() - t0) {
    if (killedAt === 0 && elapsed > 1500) {
      process.kill(victim.pid, 'SIGKILL')
      killedAt = elapsed
    }
    while (i < Math.floor(elapsed / 5)) send()
    await new Promise((r) => setTimeout(r, 5))
  }
  await Promise.all(pending)
  agent.destroy()
  assert.ok(results.length >= 990, `${results.length} requests sent`)

  let after: WorkersBody
  const deadline = Date.now() + 15_000
  do {
    after = await adminGet<WorkersBody>(c, '/workers')
    if (after.workers[0].ready && after.workers[0].pid !== victim.pid) break
    await new Promise((r) => setTimeout(r, 50))
  } while (Date.now() < deadline)
  assert.notEqual(after.workers[0].pid, victim.pid, 'worker 1 was replaced by a new process')
  assert.ok(after.workers[0].ready)
  assert.equal(after.workers[0].restarts, 1)
  assert.equal(after.workers[0].last_exit?.signal, 'SIGKILL', 'the cause is recorded')
  assert.equal(after.workers[1].pid, before.workers[1].pid, 'the other worker kept running')
  assert.match(c.process.stderr(), new RegExp(`worker 1 \\(pid ${victim.pid}\\) died \\(signal SIGKILL\\); replacing it`))

  // Which worker held each connection, from the access log lines of its answered requests.
  await new Promise((r) => setTimeout(r, 300))
  const byId = new Map((await readLog(c)).map((l) => [l.request_id, l.worker]))
  const holder = new Map<number, Set<number | undefined>>()
  for (const r of results) {
    if (r.id === undefined) continue
    const w = byId.get(r.id)
    if (w === undefined) continue // a line the killed worker had not written yet
    let set = holder.get(r.socket)
    if (set === undefined) holder.set(r.socket, set = new Set())
    set.add(w)
  }
  for (const [socket, set] of holder) assert.equal(set.size, 1, `connection ${socket} was served by one worker`)
  const survivorSockets = new Set([...holder].filter(([, set]) => set.has(2)).map(([s]) => s))
  const failed = results.filter((r) => r.error !== undefined)
  const onSurvivor = failed.filter((r) => survivorSockets.has(r.socket))
  assert.ok(survivorSockets.size > 0, 'the other worker held connections')
  assert.deepEqual(onSurvivor, [], 'no failed request on a connection held by the other worker')
  for (const f of failed) assert.ok(f.at >= killedAt - 50, `failures only after the kill (${JSON.stringify(f)})`)
  t.diagnostic(`${results.length} requests, ${failed.length} failed (all on the killed worker's connections), ${onSurvivor.length} on the other worker's ${survivorSockets.size} connections`)
  const late = results.filter((r) => r.at > killedAt + 2000)
  assert.ok(late.length > 0 && late.every((r) => r.error === undefined), 'requests sent once the kill is over all succeed')
})

test('two workers writing one access log: 50,000 requests with a reload among them, 50,000 whole lines', async () => {
  const up = await backend((_req, res) => res.end('ok'))
  const c = await startCluster(dir(), `routes: [{ upstream: u }]\nupstreams: { u: { endpoints: ["${up.url}"] } }\n`, 2, 'log.yaml')
  const total = 50_000
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })
  let next = 0
  let ok = 0
  const started = Date.now()
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < total && Date.now() - started < 90_000) {
      // A long path, so lines are long and batches cross many write boundaries.
      const n = next++
      // A reload halfway through: no line may be lost to it either.
      if (n === total / 2) c.process.child.kill('SIGHUP')
      const path = `/line-${n}-${'x'.repeat(200)}`
      await new Promise<void>((resolve, reject) => {
        http.get(`${c.origin}${path}`, { agent }, (res) => {
          res.resume()
          res.on('end', () => {
            if (res.statusCode === 200) ok++
            resolve()
          })
        }).on('error', reject)
      })
    }
  }))
  agent.destroy()
  assert.equal(ok, total, 'every request answered')
  await until('the reload', () => c.process.stderr().includes('reloaded'))
  c.process.child.kill('SIGTERM')
  assert.equal((await c.process.exited).code, 0)
  const lines = await readLog(c)
  assert.equal(lines.length, total, 'one whole JSON line per request, nothing lost at the reload or the drain')
  const workers = new Map<number | undefined, number>()
  for (const l of lines) workers.set(l.worker, (workers.get(l.worker) ?? 0) + 1)
  assert.deepEqual([...workers.keys()].sort(), [1, 2], `both workers wrote lines (${JSON.stringify([...workers])})`)
  assert.equal(new Set(lines.map((l) => l.path)).size, total, 'each request has its own line')
})
