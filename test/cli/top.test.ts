// `portico top` against a running Portico with a refusing and a hanging endpoint: `--once`
// prints the causes in one 80×24 frame, and the interactive mode, run in tmux (a real
// pseudo-terminal), redraws in place and quits on `q`.
import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { EndpointStats, StatsView } from '../../src/admin/stats.ts'
import { renderTop } from '../../src/cli/top.ts'
import { FAST_TIMEOUTS, testEnv, type TestGateway } from '../helpers/gateway.ts'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BIN = join(ROOT, 'bin', 'portico.js')
/** Where test artefacts go. */
const RESULTS = join(ROOT, 'test-results')
const env = testEnv()
const dir = mkdtempSync(join(tmpdir(), 'portico-top-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const TOKEN = 'dG9wLXRva2VuLWZvci10ZXN0cw'
const tokenFile = join(dir, 'admin.token')
writeFileSync(tokenFile, `${TOKEN}\n`)

const CHROMIUM = '/usr/bin/chromium'

/**
 * Draws a captured 80×24 terminal screen as a picture (monospace, light on dark) with
 * Chromium from the Debian package, when it is there; the text capture stays the record.
 */
async function terminalPicture(screen: string, path: string, docsPath: string | null): Promise<void> {
  const { existsSync } = await import('node:fs')
  if (!existsSync(CHROMIUM)) return
  const { chromium } = await import('playwright-core')
  const profile = mkdtempSync(join(tmpdir(), 'portico-top-shot-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 820, height: 470 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  try {
    const page = context.pages()[0] ?? await context.newPage()
    const escaped = screen.replace(/&/g, '&amp;').replace(/</g, '&lt;')
    await page.setContent(`<body style="margin:0;background:#1e1e1e"><pre style="margin:0;padding:10px;color:#e6e6e6;font:14px/18px monospace">${escaped}</pre></body>`)
    await page.screenshot({ path })
    if (docsPath !== null) await page.screenshot({ path: docsPath })
  } finally {
    await context.close()
    rmSync(profile, { recursive: true, force: true })
  }
}

/** A gateway whose upstream `app` has a refusing and a hanging endpoint, after one failure of each. */
async function faulty(): Promise<{ gw: TestGateway; admin: string }> {
  const refuse = await env.lab('refuse')
  const hang = await env.lab('hang')
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'app', upstream: 'app' }],
    upstreams: { app: { endpoints: [refuse.url, hang.url], timeouts: FAST_TIMEOUTS, retries: { attempts: 1 }, outlier_detection: { consecutive_failures: 1 } } },
    admin: { address: '127.0.0.1:0', token_file: tokenFile },
  })
  for (let i = 0; i < 2; i++) {
    const res = await fetch(`${gw.origin}/x`, { headers: { 'x-request-id': `top-${i}` } })
    await res.arrayBuffer()
    await gw.record(`top-${i}`)
  }
  return { gw, admin: `127.0.0.1:${gw.gateway.admin!.address!.port}` }
}

test('portico top --once prints one 80×24 frame with the causes, the ejected endpoint first', { timeout: 30_000 }, async () => {
  const { admin } = await faulty()
  const { stdout } = await run(process.execPath, [BIN, 'top', '--once', '--admin', admin, '--token-file', tokenFile])
  const lines = stdout.replace(/\n$/, '').split('\n')
  assert.ok(lines.length <= 24, `${lines.length} lines`)
  for (const l of lines) assert.ok(l.length <= 80, `line longer than 80: "${l}"`)
  assert.match(stdout, /UPSTREAM\/ENDPOINT +STATE/)
  assert.match(stdout, /connection_refused/)
  assert.match(stdout, /http_response_timeout/)
  assert.match(stdout, /ejected/)
  assert.match(stdout, /top-1/, 'the latest failures')
  assert.doesNotMatch(stdout, /\x1b\[/, 'no escape codes for scripts')
  const ejected = lines.findIndex((l) => / ejected /.test(l))
  const up = lines.findIndex((l) => /^ 127\.0\.0\.1:\d+ +up /.test(l))
  assert.ok(ejected > 0 && up > ejected, 'the row that hurts comes first')
})

test('portico top without the token says how to give it; without a listener says where it looked', { timeout: 30_000 }, async () => {
  const { admin } = await faulty()
  const denied = await run(process.execPath, [BIN, 'top', '--once', '--admin', admin]).then(() => null, (e: { code: number; stderr: string }) => e)
  assert.equal(denied?.code, 1)
  assert.match(denied.stderr, /needs the token: give --token-file/)
  // A port nothing listens on: listen on 0, note it, close it.
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const dead = (s.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  const gone = await run(process.execPath, [BIN, 'top', '--once', '--admin', `127.0.0.1:${dead}`]).then(() => null, (e: { code: number; stderr: string }) => e)
  assert.equal(gone?.code, 1)
  assert.match(gone.stderr, new RegExp(`cannot reach the admin API at http://127\\.0\\.0\\.1:${dead}/stats: ECONNREFUSED`))
})

const tmux = spawnSync('tmux', ['-V']).status === 0

test('portico top in a terminal (tmux, 80×24): redraws with the causes and quits on q', { skip: tmux ? false : 'tmux is not installed', timeout: 60_000 }, async () => {
  const { admin } = await faulty()
  // A tmux server of this test alone (its own socket), so no one else's session is touched.
  const socket = join(dir, 'tmux.sock')
  const t = (...args: string[]) => run('tmux', ['-S', socket, ...args])
  env.defer(async () => { await t('kill-server').catch(() => {}) })
  const done = join(dir, 'top.exit')
  const command = `'${process.execPath}' '${BIN}' top --admin ${admin} --token-file '${tokenFile}'; echo $? > '${done}'`
  await t('new-session', '-d', '-s', 'top', '-x', '80', '-y', '24', command)
  const screen = async () => (await t('capture-pane', '-p', '-t', 'top')).stdout
  let text = ''
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    text = await screen().catch(() => '')
    if (/http_response_timeout/.test(text) && /connection_refused/.test(text)) break
    await new Promise((r) => setTimeout(r, 200))
  }
  assert.match(text, /UPSTREAM\/ENDPOINT/, `the frame:\n${text}`)
  assert.match(text, /http_response_timeout/)
  assert.match(text, /q quit/)
  // It redraws: the clock in the first line moves.
  const first = text.split('\n')[0]
  let later = first
  const redraw = Date.now() + 5000
  while (later === first && Date.now() < redraw) {
    await new Promise((r) => setTimeout(r, 300))
    later = (await screen()).split('\n')[0]
  }
  assert.notEqual(later, first, 'the frame is redrawn every second')
  // The terminal's screenshot: a test artefact, and the docs' copy when asked.
  const shot = (await t('capture-pane', '-p', '-t', 'top')).stdout
  mkdirSync(RESULTS, { recursive: true })
  writeFileSync(join(RESULTS, 'top.txt'), shot)
  if (process.env.PORTICO_UPDATE_SCREENSHOTS === '1') writeFileSync(join(ROOT, 'docs', 'top.txt'), shot)
  await terminalPicture(shot, join(RESULTS, 'top.png'), process.env.PORTICO_UPDATE_SCREENSHOTS === '1' ? join(ROOT, 'docs', 'top.png') : null)
  await t('send-keys', '-t', 'top', 'q')
  const quit = Date.now() + 5000
  let code: string | null = null
  while (code === null && Date.now() < quit) {
    await new Promise((r) => setTimeout(r, 100))
    code = await import('node:fs/promises').then((fs) => fs.readFile(done, 'utf8')).catch(() => null)
  }
  assert.equal(code?.trim(), '0', 'portico top exited 0 on q')
})

test('renderTop keeps 80×24 with many endpoints: worst rows first, the rest counted', () => {
  const at = '2026-12-05T12:00:00.000Z'
  const endpoint = (i: number, bad: boolean): EndpointStats => ({
    address: `10.0.0.${i}:8080`, url: `http://10.0.0.${i}:8080`, state: bad ? 'down' as const : 'up' as const, severity: bad ? 'bad' as const : 'ok' as const,
    reason: bad ? 'connection_refused' : null, reason_detail: null, since: at, in_flight: 0, requests_per_s: 12.5, error_rate: bad ? 1 : 0, p50_ms: 3, p99_ms: 40,
    errors_window: bad ? 9 : 0, errors_hour: bad ? 90 : 0, causes_window: bad ? { connection_refused: 9 } : {} as Record<string, number>, causes_hour: {}, requests_total: 100, ejections: 0,
  })
  const v: StatsView = {
    at, bucket_ms: 10_000, window_ms: 60_000,
    upstreams: [{ name: 'api', load_balancing: 'round_robin', severity: 'bad', retries: { another_endpoint: 1, fresh_connection: 0, budget_exhausted: 0, active: 0, retrying: 0 }, endpoints: [endpoint(1, true), ...Array.from({ length: 40 }, (_, i) => endpoint(i + 2, false))], names: [], doctor: 'portico doctor --upstream http://10.0.0.1:8080/' }],
    routes: [], errors: { times: [], causes: { connection_refused: [90] }, by_endpoint: [] }, errors_window: 9,
    failures: Array.from({ length: 30 }, (_, i) => ({ ts: at, request_id: `r${i}`, error: 'connection_refused', status: 502, method: 'GET', host: 'h', path: '/', route: 'r', upstream: 'api', endpoint: '10.0.0.1:8080', attempts: 1, connection_reused: false, duration_ms: 1, timings: { dns_ms: null, connect_ms: null, tls_ms: null, ttfb_ms: null }, details: null, title: 't', hint: 'h', doctor: null })),
    failures_total: 30,
  }
  const lines = renderTop(v, '127.0.0.1:9901', 80, 24)
  assert.equal(lines.length, 24)
  for (const l of lines) assert.ok(l.length <= 80, l)
  assert.match(lines.find((l) => l.startsWith(' 10.0.0.1:8080')) ?? '', /down .*connection_refused 9/)
  assert.ok(lines.some((l) => /… \d+ more rows/.test(l)))
  assert.ok(lines.filter((l) => /^\d\d:\d\d:\d\d 502 connection_refused/.test(l)).length >= 3, 'at least three failures shown')
  assert.match(lines[23], /q quit/)
})
