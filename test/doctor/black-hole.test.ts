// Bounded time: `portico doctor` exits in under 10 s wall-clock when every target is a black hole, a DNS
// server that never answers included (no getaddrinfo holding threads), at the default --timeout of 3 s.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLab, type LabServer } from '../../src/lab/index.ts'
import { startDnsServer } from './probes/dns-server.ts'

const NODE = process.execPath
const CLI = new URL('../../bin/portico.js', import.meta.url).pathname

/** Runs the CLI; resolves with its exit code, its output and the wall time to process exit, ms. */
function cli(args: string[]): Promise<{ code: number | null; out: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const child = spawn(NODE, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    child.once('exit', (code) => resolve({ code, out, ms: performance.now() - t0 }))
  })
}

test('black holes everywhere: six names on a silent DNS server, a full backlog, a backend that never answers; exit in < 10 s', { timeout: 30_000 }, async (t) => {
  const names = ['a', 'b', 'c', 'd', 'e', 'f'].map((n) => `${n}.blackhole.test`)
  const dns = await startDnsServer(Object.fromEntries(names.map((n) => [n, 'silent' as const])))
  t.after(() => dns.close())
  const labs: LabServer[] = [await startLab('connect-timeout'), await startLab('hang')]
  t.after(() => Promise.all(labs.map((l) => l.close())))
  const dir = await mkdtemp(join(tmpdir(), 'portico-blackhole-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'portico.yaml')
  await writeFile(file, [
    'listeners:', '  - address: 127.0.0.1:0', 'routes:', '  - upstream: names',
    'upstreams:',
    '  names:', `    endpoints: [ ${names.map((n) => `"http://${n}:8080"`).join(', ')} ]`, `    dns: { resolvers: [ "127.0.0.1:${dns.port}" ] }`,
    '  holes:', `    endpoints: [ ${labs.map((l) => `"${l.url}"`).join(', ')} ]`, '    timeouts: { connect: 10s, response_header: 60s }', '',
  ].join('\n'))
  const r = await cli(['doctor', '-c', file, '--json'])
  assert.equal(r.code, 1, r.out)
  assert.ok(r.ms < 10_000, `took ${Math.round(r.ms)}ms`)
  const report = JSON.parse(r.out)
  const causes = new Set(report.findings.map((f: { cause: string | null }) => f.cause))
  for (const c of ['dns_timeout', 'connection_timeout', 'http_response_timeout']) assert.ok(causes.has(c), `${c} missing: ${[...causes].join(', ')}`)
  t.diagnostic(`wall time to exit ${Math.round(r.ms)}ms, durationMs ${report.durationMs}`)
})
