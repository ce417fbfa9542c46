// The built form (scripts/build.js: the esbuild bundle that bin/portico.js runs when it is
// up to date): it builds, serves a request, stops on SIGTERM, and one idle serving process
// stays small (the sources' type stripping and unused modules are what it leaves out).
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import { untilStderr } from '../helpers/child.ts'
import { freePort } from '../helpers/ports.ts'

const ROOT = new URL('../..', import.meta.url).pathname
/** Idle RSS a serving process must stay under, MB: measured about 63 (bench/memory.ts); bare Node.js takes about 42. */
const IDLE_RSS_LIMIT_MB = 72

test('the bundle builds, serves in quick mode as one process (small when idle) and with two workers, and drains on SIGTERM', { skip: existsSync(join(ROOT, 'node_modules/esbuild')) ? false : 'esbuild is not installed', timeout: 120_000 }, async (t) => {
  // Inside the checkout, so that the bundle finds node_modules as dist/ does.
  mkdirSync(join(ROOT, 'tmp'), { recursive: true })
  const out = mkdtempSync(join(ROOT, 'tmp', 'build-'))
  t.after(() => rmSync(out, { recursive: true, force: true }))
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, [join(ROOT, 'scripts/build.js'), '--outdir', out], { timeout: 90_000 }, (err, _o, stderr) => (err ? reject(new Error(`build failed: ${stderr}`)) : resolve()))
  })
  assert.ok(existsSync(join(out, 'portico.js')) && existsSync(join(out, 'load-child.js')) && existsSync(join(out, 'dashboard.css')))

  const upstream = http.createServer((_req, res) => res.end('from the upstream'))
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  t.after(() => upstream.close())
  const port = await freePort()

  const upstreamPort = (upstream.address() as AddressInfo).port
  // One process: it serves, and stays small when idle.
  const one = await serveFromBundle(out, port, upstreamPort, 1)
  t.after(() => one.kill())
  assert.equal(await getBody(port), 'from the upstream')
  // Idle: give start-up garbage a moment, then read the resident size.
  await new Promise((r) => setTimeout(r, 1500))
  const rssMb = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${one.pid}/status`, 'utf8'))?.[1]) / 1024
  t.diagnostic(`idle RSS of the built form: ${rssMb.toFixed(1)} MB`)
  assert.ok(rssMb > 0 && rssMb <= IDLE_RSS_LIMIT_MB, `idle RSS ${rssMb.toFixed(1)} MB, over ${IDLE_RSS_LIMIT_MB} MB`)
  assert.equal(await one.stop(), 0, one.stderr())

  // Two workers: the primary starts the bundle's worker program.
  const two = await serveFromBundle(out, port, upstreamPort, 2)
  t.after(() => two.kill())
  assert.equal(await getBody(port), 'from the upstream')
  assert.equal(await two.stop(), 0, two.stderr())
})

/** `portico serve` from the bundle in quick mode; resolves once it listens. */
async function serveFromBundle(out: string, port: number, upstreamPort: number, workers: number): Promise<{ pid: number; stderr: () => string; stop: () => Promise<number | null>; kill: () => void }> {
  const child = spawn(process.execPath, [join(out, 'portico.js'), 'serve', '--workers', String(workers), '--listen', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${upstreamPort}`], { stdio: ['ignore', 'ignore', 'pipe'] })
  const stderr = await untilStderr(child, 'listening on')
  return {
    pid: child.pid as number,
    stderr,
    stop: () => {
      child.kill('SIGTERM')
      return new Promise((r) => child.once('exit', r))
    },
    kill: () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') },
  }
}

/** The body of a GET / on 127.0.0.1:`port`, after checking it is a 200. */
function getBody(port: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      assert.equal(res.statusCode, 200)
      let b = ''
      res.setEncoding('utf8').on('data', (d: string) => (b += d)).on('end', () => resolve(b))
    }).on('error', reject)
  })
}
