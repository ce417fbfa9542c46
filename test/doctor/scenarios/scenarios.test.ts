// The scenario suite: each 502/504 set-up reproduced behind a real nginx (Debian package, started here as a
// non-daemon with its own prefix) and behind Portico; a few requests so the proxy logs, then
// `portico doctor --nginx nginx.conf --log error.log` or `-c portico.yaml --log access.log`. The top finding
// must name the set-up's cause, and its fix the directive or key with a working value.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseDocument } from 'yaml'
import { loadConfigFile } from '../../../src/config/load.ts'
import { Gateway } from '../../../src/server/gateway.ts'
import { runDoctor, type Report } from '../../../src/doctor/run.ts'
import { renderText } from '../../../src/doctor/report.ts'
import { startDnsServer } from '../probes/dns-server.ts'
import { SETUPS, type Setup, type SetupContext } from './setups.ts'
import { vocabularyProblems } from '../vocabulary.ts'
import { freePort, waitListening } from '../../helpers/ports.ts'

const NGINX = '/usr/sbin/nginx'
const noNginx = existsSync(NGINX) ? false : `nginx not installed at ${NGINX} (apt-get install nginx-light)`

/** Set-ups run this many at a time: enough to keep the suite short, few enough for a loaded 2-core machine. */
const CONCURRENCY = 6

/** One GET through the proxy; resolves with the status (0 when the connection failed), never rejects. */
function get(port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    // A large maxHeaderSize: the header-size set-ups send 20 KB headers that the proxy, once fixed, passes on.
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: timeoutMs, maxHeaderSize: 256 * 1024 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
      res.on('error', () => resolve(res.statusCode ?? 0))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
  })
}

async function traffic(port: number, timeoutMs: number): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await get(port, timeoutMs)
    await new Promise((r) => setTimeout(r, 400))
  }
}

/** A pool of `n` slots, so set-ups overlap without all starting at once. */
function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0
  const waiting: (() => void)[] = []
  return async (fn) => {
    if (active >= n) await new Promise<void>((r) => waiting.push(r))
    active++
    try {
      return await fn()
    } finally {
      active--
      waiting.shift()?.()
    }
  }
}

function explain(report: Report, log = ''): string {
  return `${renderText(report)}\n${log ? `log:\n${log.slice(-1500)}` : ''}`
}

function assertTop(report: Report, setup: Setup, expect: Setup['expect'], check: ((f: Report['findings'][number]) => void) | undefined, log: string): void {
  const top = report.findings[0]
  assert.ok(top && top.severity !== 'info', `no problem found:\n${explain(report, log)}`)
  assert.equal(top.cause, expect, `${setup.name}: top finding\n${explain(report, log)}`)
  // The summary counts what is listed, and the headline states the top finding.
  const text = renderText(report)
  assert.ok(text.split('\n')[1].startsWith(`Most likely: ${top.title}`), text)
  // Every fix in the report, not only the top one, names real keys and directives.
  const words = report.findings.flatMap((f) => vocabularyProblems(f.fix).map((p) => `${f.id}: ${p}`))
  assert.deepEqual(words, [], `${setup.name}: ${words.join('; ')}`)
  if (setup.report) {
    try {
      setup.report(report.findings)
    } catch (e) {
      assert.fail(`${setup.name}: ${(e as Error).message}\n${explain(report, log)}`)
    }
  }
  if (check) {
    try {
      check(top)
    } catch (e) {
      assert.fail(`${setup.name}: ${(e as Error).message}\n${explain(report, log)}`)
    }
  }
}

const sample: { text?: string } = {}

/**
 * Starts nginx on a free loopback port, written into the `listen 127.0.0.1:<port>` of `conf`.
 * A port found free can be taken by another process before nginx binds it: nginx then
 * exits with "Address already in use", and it is started again on another port.
 */
async function startNginx(dir: string, conf: string, errorLog: string): Promise<{ nginx: ChildProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    await writeFile(conf, (await readFile(conf, 'utf8')).replace(/listen 127\.0\.0\.1:\d+;/, `listen 127.0.0.1:${port};`))
    const nginx = spawn(NGINX, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    nginx.stderr?.on('data', (d) => (stderr += d))
    const exited = new Promise<'exited'>((r) => nginx.once('exit', () => r('exited')))
    // Up once this master started its worker (error_log at info level says so); gone if the bind failed.
    const started = (async () => {
      const deadline = Date.now() + 5000
      while (Date.now() < deadline) {
        const log = await readFile(errorLog, 'utf8').catch(() => '')
        if (log.includes(`${nginx.pid}#${nginx.pid}: start worker process`)) return 'started' as const
        await new Promise((r) => setTimeout(r, 25))
      }
      return 'slow' as const
    })()
    const how = await Promise.race([exited, started])
    if (how === 'started') {
      await waitListening(port, Date.now() + 5000)
      return { nginx, port }
    }
    nginx.kill('SIGKILL')
    if (attempt >= 5 || !/Address already in use/.test(stderr + (await readFile(errorLog, 'utf8').catch(() => '')))) throw new Error(`nginx did not start: ${stderr}`)
  }
}

async function stopNginx(nginx: ChildProcess): Promise<void> {
  if (nginx.exitCode !== null || nginx.signalCode !== null) return
  const exited = new Promise((r) => nginx.once('exit', r))
  nginx.kill('SIGTERM')
  await exited
}

/** The first code span of a fix that holds nginx statements (`a 1; b 2;`), as statements. */
function statementsOf(fix: string): string[] {
  const span = [...fix.matchAll(/`([^`]+;)`/g)][0]?.[1]
  assert.ok(span, `no nginx statement in the fix: ${fix}`)
  return span.split(';').map((x) => x.trim()).filter(Boolean)
}

/** Applies nginx statements as the fix says: each replaces the directive of that name in the location, or is added to it. */
function applyNginxFix(conf: string, fix: string): string {
  let out = conf
  for (const stmt of statementsOf(fix)) {
    const name = stmt.split(/\s+/)[0]
    out = out.replace(new RegExp(`\\b${name}\\s[^;]*;`, 'g'), '')
    out = out.replace('location / {', `location / { ${stmt};`)
  }
  return out
}

/** Applies the `upstreams.<name>.<key>: <value>` (or endpoint URL) of a Portico fix to the YAML. */
function applyPorticoFix(yamlText: string, fix: string): string {
  const doc = parseDocument(yamlText)
  const key = /`upstreams\.(\w+)\.([\w.]+): ([^`]+)`/.exec(fix)
  const endpoint = /Use `((?:https?:\/\/)[^`]+)` in `upstreams\.(\w+)\.endpoints`/.exec(fix)
  if (key) doc.setIn(['upstreams', key[1], ...key[2].split('.')], key[3])
  else if (endpoint) doc.setIn(['upstreams', endpoint[2], 'endpoints'], doc.createNode([endpoint[1]]))
  else assert.fail(`no Portico key in the fix: ${fix}`)
  return doc.toString()
}

async function nginxRun(setup: Setup, ctx: SetupContext): Promise<void> {
  const dir = join(ctx.dir, setup.name.replace(/\W+/g, '-'))
  await mkdir(dir, { recursive: true })
  // The workers run as nobody: they must reach the temp directories.
  await chmod(dir, 0o755)
  const backend = await setup.backend({ ...ctx, dir })
  try {
    const errorLog = join(dir, 'error.log')
    const accessLog = join(dir, 'access.log')
    const conf = join(dir, 'nginx.conf')
    const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `${k}_temp_path ${join(dir, k)};`).join('\n')
    const body = (setup.nginx as NonNullable<Setup['nginx']>)(backend, ctx).replace('NGINX_PORT', '0')
    await writeFile(conf, `worker_processes 1;\npid ${join(dir, 'nginx.pid')};\nerror_log ${errorLog} info;\nevents { worker_connections 64; }\nhttp {\naccess_log ${accessLog};\n${temp}\n${body}\n}\n`)
    let { nginx, port } = await startNginx(dir, conf, errorLog)
    try {
      await traffic(port, 4000)
      const report = await runDoctor({
        nginx: conf, log: [errorLog, ...(setup.via ? [accessLog] : [])], ...(setup.via ? { via: `http://127.0.0.1:${port}/` } : {}),
        timeoutMs: setup.timeoutMs ?? 1500, samples: 2, keepaliveLimitMs: 1500, diskPaths: [],
      })
      const log = await readFile(errorLog, 'utf8')
      assertTop(report, setup, setup.expect, setup.nginxFix, log)
      if (setup.logLine) assert.match(log, setup.logLine, `${setup.name}: nginx did not log the fault`)
      if (setup.name === 'slow backend 2.5 s behind a 1 s read timeout') sample.text = renderText(report)
      if (setup.applyFix) {
        // The fix, applied as written, must make the requests work.
        await stopNginx(nginx)
        await writeFile(conf, applyNginxFix(await readFile(conf, 'utf8'), report.findings[0].fix))
        ;({ nginx, port } = await startNginx(dir, conf, errorLog))
        const status = await get(port, 8000)
        assert.equal(status, 200, `${setup.name}: after applying "${report.findings[0].fix}" nginx answers ${status}\n${await readFile(conf, 'utf8')}\n${(await readFile(errorLog, 'utf8')).slice(-800)}`)
      }
    } finally {
      await stopNginx(nginx)
    }
  } finally {
    await backend.close()
  }
}

async function porticoRun(setup: Setup, ctx: SetupContext): Promise<void> {
  const dir = join(ctx.dir, `portico-${setup.name.replace(/\W+/g, '-')}`)
  await mkdir(dir, { recursive: true })
  const backend = await setup.backend({ ...ctx, dir })
  try {
    const file = join(dir, 'portico.yaml')
    const accessLog = join(dir, 'access.log')
    const extra = (setup.portico as NonNullable<Setup['portico']>)(backend, ctx)
    await writeFile(file, [
      'listeners:', '  - address: 127.0.0.1:0', 'routes:', '  - upstream: lab', `access_log: { path: ${accessLog} }`,
      'upstreams:', '  lab:', `    endpoints: [ "${backend.endpoint}" ]`,
      ...(extra.some((l) => l.startsWith('timeouts:')) ? [] : ['    timeouts: { connect: 1s, response_header: 1s, idle: 1s }']),
      ...extra.map((l) => `    ${l}`), '',
    ].join('\n'))
    const gw = new Gateway(await loadConfigFile(file))
    await gw.start()
    try {
      const port = gw.listeners[0].address.port
      await traffic(port, 4000)
      const report = await runDoctor({
        config: file, log: [accessLog], via: `http://127.0.0.1:${port}/`,
        timeoutMs: setup.timeoutMs ?? 1500, samples: 2, keepaliveLimitMs: 1500, diskPaths: [],
      })
      const log = await readFile(accessLog, 'utf8').catch(() => '')
      assertTop(report, setup, setup.porticoExpect === undefined ? setup.expect : setup.porticoExpect, setup.porticoFix, log)
      if (setup.applyFix === 'both') {
        await gw.stop(0)
        await writeFile(file, applyPorticoFix(await readFile(file, 'utf8'), report.findings[0].fix))
        const fixed = new Gateway(await loadConfigFile(file))
        await fixed.start()
        try {
          const status = await get(fixed.listeners[0].address.port, 8000)
          assert.equal(status, 200, `${setup.name}: after applying "${report.findings[0].fix}" Portico answers ${status}\n${await readFile(file, 'utf8')}`)
        } finally {
          await fixed.stop(0)
        }
      }
    } finally {
      await gw.stop(0)
    }
  } finally {
    await backend.close()
  }
}

test('doctor scenario suite: behind nginx and behind Portico, the top finding names the cause and a fix with a working value', { timeout: 600_000, concurrency: true }, async (t) => {
  const dns = await startDnsServer({ 'silent.test': 'silent' })
  t.after(() => dns.close())
  const dir = await mkdtemp(join(tmpdir(), 'portico-doctor-suite-'))
  await chmod(dir, 0o755)
  t.after(() => rm(dir, { recursive: true, force: true }))
  const ctx: SetupContext = { dir, dns }
  const slot = limiter(CONCURRENCY)
  const runs: Promise<unknown>[] = []
  for (const setup of SETUPS) {
    if (setup.nginx) runs.push(t.test(`nginx: ${setup.name}`, { skip: noNginx }, () => slot(() => nginxRun(setup, ctx))))
    if (setup.portico) runs.push(t.test(`portico: ${setup.name}`, () => slot(() => porticoRun(setup, ctx))))
  }
  await Promise.all(runs)
  if (sample.text) t.diagnostic(`sample output (nginx, slow backend 2.5 s):\n${sample.text}`)
})

test('the suite covers at least 20 set-ups behind nginx and behind Portico', () => {
  assert.ok(SETUPS.filter((s) => s.nginx).length >= 20)
  assert.ok(SETUPS.filter((s) => s.portico).length >= 18)
})
