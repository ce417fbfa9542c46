// portico serve as a process: SIGTERM under load drains in-flight requests, refuses new connections, flushes the access log and exits 0.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import http from 'node:http'
import { join } from 'node:path'
import { test } from 'node:test'
import { startLab } from '../../src/lab/index.ts'
import { useTempDir } from '../config/temp-dir.ts'
import { freePort, serve } from '../admin/serve-process.ts'

const dir = useTempDir('portico-drain-process-')

/** One GET on its own connection. */
function get(url: string): Promise<{ status: number; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }))
    }).on('error', reject)
  })
}

test('SIGTERM under load: in-flight requests finish with 200, new connections are refused, exit 0 within the drain timeout', { timeout: 60_000 }, async () => {
  const up = await startLab('ok', { name: 'a' })
  try {
    const listen = `127.0.0.1:${await freePort()}`
    const file = join(dir(), 'portico.yaml')
    await writeFile(file, `listeners: [{ address: "${listen}" }]
routes: [{ upstream: a }]
upstreams: { a: { endpoints: ["${up.url}"] } }
shutdown: { drain_timeout: 5s }
`)
    const p = await serve(file, 'listening on')
    // Warm-up traffic, then 20 slow requests in flight when the signal arrives.
    for (let i = 0; i < 20; i++) assert.equal((await get(`http://${listen}/`)).status, 200)
    const slow = Array.from({ length: 20 }, () => get(`http://${listen}/delay/500`))
    await new Promise((r) => setTimeout(r, 150))
    const t0 = Date.now()
    p.child.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 150))
    await assert.rejects(get(`http://${listen}/`), /ECONNREFUSED/, 'no new connections once draining')

    const answers = await Promise.all(slow)
    assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200))
    assert.ok(answers.every((a) => a.connection === 'close'), 'drained responses say Connection: close')
    const exit = await p.exited
    const took = Date.now() - t0
    assert.deepEqual(exit, { code: 0, signal: null })
    assert.ok(took < 5000, `exited within the drain timeout (${took}ms)`)
    const lines = p.stdout().trim().split('\n').map((l) => JSON.parse(l) as { path: string; status: number })
    assert.equal(lines.filter((l) => l.path === '/delay/500' && l.status === 200).length, 20, 'the access log was flushed before exit')
    assert.match(p.stderr(), /SIGTERM: draining/)
  } finally {
    await up.close()
  }
})
