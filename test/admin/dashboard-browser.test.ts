// The dashboard in a real browser: Chromium from the Debian package (/usr/bin/chromium),
// driven by playwright-core (no browser is downloaded). The page loads without a console
// error, the chart renders, and after requests to a refusing and a hanging endpoint the
// feed shows their causes and the refused endpoint's state changes, within 3 s, without
// a reload. The screenshot is written to test-results/ (and to docs/ with
// PORTICO_UPDATE_SCREENSHOTS=1).
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { FAST_TIMEOUTS, testEnv } from '../helpers/gateway.ts'

const CHROMIUM = '/usr/bin/chromium'
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** Where test artefacts go. */
const RESULTS = join(ROOT, 'test-results')

const env = testEnv()
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (Debian package chromium; .ci/run installs it)`

test('the dashboard in Chromium: no console error, chart drawn, failures and state change live within 3 s', { skip, timeout: 60_000 }, async () => {
  const { chromium } = await import('playwright-core')
  const profile = mkdtempSync(join(tmpdir(), 'portico-chromium-'))
  after(() => rmSync(profile, { recursive: true, force: true }))
  const refuse = await env.lab('refuse')
  const hang = await env.lab('hang')
  const ok = await env.lab('ok', { name: 'ok' })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [
      { name: 'refused', match: { path_prefix: '/refused' }, upstream: 'app' },
      { name: 'slow', match: { path_prefix: '/slow' }, upstream: 'app' },
      { name: 'main', upstream: 'ok' },
    ],
    upstreams: {
      app: { endpoints: [refuse.url, hang.url], timeouts: FAST_TIMEOUTS, retries: { attempts: 1 }, outlier_detection: { consecutive_failures: 1 } },
      ok: { endpoints: [ok.url] },
    },
    admin: { address: '127.0.0.1:0' },
  })
  const admin = `http://127.0.0.1:${gw.gateway.admin!.address!.port}`
  for (let i = 0; i < 5; i++) await (await fetch(`${gw.origin}/ok`)).arrayBuffer()

  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1400, height: 1000 },
  })
  env.defer(() => context.close())
  const page = context.pages()[0] ?? await context.newPage()
  const problems: string[] = []
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`) })
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  // Nothing may leave the admin listener.
  page.on('request', (r) => { if (!r.url().startsWith(admin) && !r.url().startsWith('data:')) problems.push(`request off the admin listener: ${r.url()}`) })

  const res = await page.goto(`${admin}/`)
  assert.equal(res?.status(), 200)
  // The chart: uPlot's canvas, drawn with a size.
  const canvas = page.locator('#chart .uplot canvas')
  await canvas.waitFor({ state: 'attached', timeout: 10_000 })
  const box = await canvas.boundingBox()
  assert.ok(box !== null && box.width > 300 && box.height > 100, `chart canvas ${JSON.stringify(box)}`)
  const state = page.locator(`tr[data-endpoint="${new URL(refuse.url).host}"]`)
  assert.equal(await state.getAttribute('data-state'), 'up')

  // The faults, through Portico: a refused connection (which ejects the endpoint) and a first-byte timeout.
  const sent = Date.now()
  const r1 = await fetch(`${gw.origin}/refused/a`, { headers: { 'x-request-id': 'browser-refused' } })
  await r1.arrayBuffer()
  const r2 = await fetch(`${gw.origin}/slow/b`, { headers: { 'x-request-id': 'browser-timeout' } })
  await r2.arrayBuffer()
  assert.deepEqual([r1.status, r2.status], [502, 504])

  await page.locator('details.failure[data-cause="connection_refused"]').first().waitFor({ timeout: 3000 })
  await page.locator('details.failure[data-cause="http_response_timeout"]').first().waitFor({ timeout: 3000 })
  const host = new URL(refuse.url).host
  await page.locator(`tr[data-endpoint="${host}"][data-state="ejected"]`).waitFor({ timeout: 3000 })
  const elapsed = Date.now() - sent
  assert.ok(elapsed < 3000 + 1500, `feed and state updated ${elapsed} ms after the requests (the timeout request itself takes 300 ms)`)
  assert.equal(await page.locator(`tr[data-endpoint="${new URL(refuse.url).host}"]`).getAttribute('class'), 'bad')

  // A row opens the cause's explanation and the doctor command; it stays open across refreshes.
  const row = page.locator('details.failure[data-cause="connection_refused"]').first()
  await row.locator('summary').click()
  await page.waitForTimeout(1500)
  const text = await page.locator('details.failure[data-cause="connection_refused"][open]').first().innerText()
  assert.match(text, /The upstream refused the connection\./)
  assert.match(text, /Nothing listens on that address and port/)
  assert.match(text, new RegExp(`portico doctor --upstream http://${new URL(refuse.url).host}/`))
  // The chart's legend has both causes.
  await page.locator('#chart .u-legend .u-series').nth(2).waitFor({ timeout: 3000 })
  const legend = await page.locator('#chart .u-legend').innerText()
  assert.match(legend, /connection_refused/)
  assert.match(legend, /http_response_timeout/)

  mkdirSync(RESULTS, { recursive: true })
  await page.screenshot({ path: join(RESULTS, 'dashboard.png'), fullPage: true })
  if (process.env.PORTICO_UPDATE_SCREENSHOTS === '1') await page.screenshot({ path: join(ROOT, 'docs', 'dashboard.png'), fullPage: false })
  assert.deepEqual(problems, [])
})

test('with admin.token_file, the browser signs in once: the session cookie is HttpOnly and the page refreshes with it', { skip, timeout: 60_000 }, async () => {
  const { chromium } = await import('playwright-core')
  const profile = mkdtempSync(join(tmpdir(), 'portico-chromium-'))
  after(() => rmSync(profile, { recursive: true, force: true }))
  const tokenFile = join(profile, 'admin.token')
  writeFileSync(tokenFile, 'YnJvd3Nlci1zaWduLWluLXRva2Vu\n')
  const ok = await env.lab('ok', { name: 'ok' })
  const gw = await env.gateway({
    listeners: [{ address: '127.0.0.1:0' }],
    routes: [{ name: 'main', upstream: 'ok' }],
    upstreams: { ok: { endpoints: [ok.url] } },
    admin: { address: '127.0.0.1:0', token_file: tokenFile },
  })
  const admin = `http://127.0.0.1:${gw.gateway.admin!.address!.port}`
  const context = await chromium.launchPersistentContext(join(profile, 'profile'), { executablePath: CHROMIUM, headless: true, args: ARGS })
  env.defer(() => context.close())
  const page = context.pages()[0] ?? await context.newPage()
  const first = await page.goto(`${admin}/`)
  assert.equal(first?.status(), 401)
  await page.locator('input[name="token"]').fill('YnJvd3Nlci1zaWduLWluLXRva2Vu')
  const problems: string[] = []
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`) })
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  await Promise.all([page.waitForURL(`${admin}/`), page.locator('button').click()])
  await page.locator('#chart .uplot canvas').waitFor({ state: 'attached', timeout: 10_000 })
  assert.equal(await page.evaluate('document.cookie'), '', 'no script can read the session cookie')
  // Requests through Portico show up without a reload: the refreshes carry the cookie.
  for (let i = 0; i < 3; i++) await (await fetch(`${gw.origin}/x`)).arrayBuffer()
  await page.locator('#routes tr:has(td.name:text-is("main")) td.num >> nth=1').filter({ hasText: /^3$/ }).waitFor({ timeout: 3000 })
  assert.equal(await page.locator('#live').textContent(), 'live')
  assert.deepEqual(problems, [])
})
