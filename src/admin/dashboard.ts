/**
 * The dashboard: one HTML page at `/` of the admin listener, after HAProxy's stats page
 * (a dense table, a row an endpoint, red rows first) that is useful without JavaScript and,
 * with it, refreshes every second from `GET /dashboard/sections` (the same HTML, rendered
 * from `GET /stats`) and draws the last hour with uPlot (served from the `uplot` package:
 * the page loads nothing from the network beyond the admin listener).
 *
 * With `admin.token_file`, a browser signs in once at `/login` (a form, or `/login?token=`):
 * Portico answers with an HttpOnly, SameSite=Strict session cookie derived from the token,
 * which opens the API's reads (GET, HEAD) only; writes still need `Authorization: Bearer`.
 */
import { nodeCrypto } from '../lib/lazy-builtins.ts'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { CAUSE_TYPES } from '../failures/causes.ts'
import { causeTitle, type EndpointStats, type FailureView, type StatsView, type UpstreamStats } from './stats.ts'

/** The session cookie's name. */
export const SESSION_COOKIE = 'portico_admin_session'

/** The session cookie value of a token: SHA-256 of a label and the token (the cookie never holds the token itself). */
export function sessionValue(token: string): string {
  return nodeCrypto().createHash('sha256').update(`portico dashboard session\n${token}`).digest('hex')
}

/** The `Set-Cookie` of a session (RFC 6265 §4.1; HttpOnly: no script reads it; SameSite=Strict: no other site sends it). */
export function sessionCookie(token: string): string {
  return `${SESSION_COOKIE}=${sessionValue(token)}; Path=/; HttpOnly; SameSite=Strict`
}

/** The session cookie value of a `Cookie` header, or null. */
export function sessionOf(cookie: string | undefined): string | null {
  if (cookie === undefined) return null
  for (const part of cookie.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim()
  }
  return null
}

/** Content-Security-Policy of the dashboard's pages: nothing but the admin listener itself, no inline script, no framing. */
export const DASHBOARD_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

/** A static file of the dashboard: its bytes and type. */
export interface Asset {
  body: Buffer
  contentType: string
}

const require = createRequire(import.meta.url)
const HERE = path.dirname(new URL(import.meta.url).pathname)

/** The dashboard's static files by path; read at first use. */
const ASSET_FILES: Record<string, { file: () => string; contentType: string }> = {
  '/assets/dashboard.js': { file: () => path.join(HERE, 'dashboard-client.js'), contentType: 'text/javascript; charset=utf-8' },
  '/assets/dashboard.css': { file: () => path.join(HERE, 'dashboard.css'), contentType: 'text/css; charset=utf-8' },
  '/assets/uPlot.iife.min.js': { file: () => path.join(path.dirname(require.resolve('uplot')), 'uPlot.iife.min.js'), contentType: 'text/javascript; charset=utf-8' },
  '/assets/uPlot.min.css': { file: () => path.join(path.dirname(require.resolve('uplot')), 'uPlot.min.css'), contentType: 'text/css; charset=utf-8' },
}
const assets = new Map<string, Asset>()

/** The static file at `urlPath`, or null when there is none. @throws {Error} when the file is missing from the installation */
export function dashboardAsset(urlPath: string): Asset | null {
  const a = ASSET_FILES[urlPath]
  if (a === undefined) return null
  let cached = assets.get(urlPath)
  if (cached === undefined) assets.set(urlPath, cached = { body: readFileSync(a.file()), contentType: a.contentType })
  return cached
}

/** Paths of the dashboard's static files. */
export const ASSET_PATHS: readonly string[] = Object.keys(ASSET_FILES)

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
/** Text made safe for HTML content and attribute values. */
export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c])
}

/** The colour class of a cause: its row in the cause table (stable across views). */
export function causeIndex(type: string): number {
  const i = CAUSE_TYPES.indexOf(type as never)
  return i < 0 ? CAUSE_TYPES.length : i
}

const fmtRate = (v: number): string => (v === 0 ? '0' : v < 10 ? v.toFixed(1) : Math.round(v).toString())
const fmtMs = (v: number | null): string => (v === null ? '–' : v < 10 ? v.toFixed(1) : Math.round(v).toString())
const fmtPct = (v: number | null): string => (v === null ? '–' : v === 0 ? '0' : v < 0.001 ? '<0.1' : (v * 100).toFixed(v < 0.1 ? 1 : 0))

/** `12s`, `5m`, `3h`, `2d` since `iso`. */
export function age(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}

function causesCell(causes: Record<string, number>): string {
  const entries = Object.entries(causes).sort((a, b) => b[1] - a[1])
  if (entries.length === 0) return ''
  return entries.map(([t, n]) => `<span class="cause c${causeIndex(t)}" title="${esc(causeTitle(t))}">${esc(t)}&nbsp;${n}</span>`).join(' ')
}

function endpointRow(e: EndpointStats, now: number): string {
  const reason = e.reason === null ? (e.reason_detail === null ? '' : esc(e.reason_detail)) : `<span title="${esc(e.reason_detail ?? '')}">${esc(e.reason)}</span>`
  return `<tr class="${e.severity}" data-endpoint="${esc(e.address)}" data-state="${e.state}">` +
    `<td class="name">${esc(e.address)}</td><td class="state st-${e.state}">${e.state.replace('_', ' ')}</td><td>${reason}</td>` +
    `<td class="num" title="${esc(e.since)}">${age(e.since, now)}</td><td class="num">${e.in_flight}</td><td class="num">${fmtRate(e.requests_per_s)}</td>` +
    `<td class="num">${fmtMs(e.p50_ms)}</td><td class="num">${fmtMs(e.p99_ms)}</td><td class="num">${fmtPct(e.error_rate)}</td>` +
    `<td class="causes">${causesCell(e.causes_window)}</td><td class="num">${e.errors_hour}</td><td class="num">${e.requests_total}</td><td class="num">${e.ejections}</td></tr>`
}

function upstreamBody(u: UpstreamStats, now: number): string {
  const r = u.retries
  const retries = `retries: ${r.another_endpoint} another endpoint, ${r.fresh_connection} fresh connection, ${r.budget_exhausted} refused by budget; in budget now ${r.retrying} of ${r.active}`
  return `<tbody class="upstream ${u.severity}" data-upstream="${esc(u.name)}"><tr class="head"><th colspan="13"><span class="uname">${esc(u.name)}</span> ` +
    `<span class="meta">${esc(u.load_balancing)} · ${esc(retries)}</span> <code class="doctor" title="probe this upstream">${esc(u.doctor)}</code></th></tr>` +
    (u.endpoints.length === 0 ? '<tr class="bad"><td colspan="13">no endpoint (the names resolve to no address yet)</td></tr>' : u.endpoints.map((e) => endpointRow(e, now)).join('')) +
    '</tbody>'
}

function failureItem(f: FailureView): string {
  const t = f.timings
  const timings = `dns ${fmtMs(t.dns_ms)} · connect ${fmtMs(t.connect_ms)} · tls ${fmtMs(t.tls_ms)} · ttfb ${fmtMs(t.ttfb_ms)} · total ${fmtMs(f.duration_ms)} ms`
  return `<details class="failure" data-id="${esc(f.request_id)}" data-cause="${esc(f.error)}"><summary>` +
    `<span class="ts">${esc(f.ts.slice(11, 23))}</span><span class="rid">${esc(f.request_id)}</span><span class="route">${esc(f.route ?? '–')}</span>` +
    `<span class="ep">${esc(f.upstream ?? '–')} ${esc(f.endpoint ?? '')}</span><span class="cause c${causeIndex(f.error)}">${esc(f.error)}</span>` +
    `<span class="status">${f.status}</span><span class="timings">${esc(timings)}</span></summary>` +
    `<div class="explain"><p><b>${esc(f.title)}.</b> ${esc(f.hint)}</p>` +
    `<p>${esc(f.method)} ${esc(f.host)}${esc(f.path)} · attempts ${f.attempts}${f.connection_reused ? ' · reused connection' : ''}${f.details ? ` · ${esc(f.details)}` : ''}</p>` +
    (f.doctor === null ? '' : `<p>Run: <code class="doctor">${esc(f.doctor)}</code></p>`) + '</div></details>'
}

/**
 * The live part of the page (upstreams, errors by endpoint, feed, routes) as HTML, plus
 * the chart's series as a JSON data block (`<script type="application/json">`, not run).
 */
export function renderSections(v: StatsView): string {
  const now = Date.parse(v.at)
  const bad = v.upstreams.some((u) => u.severity === 'bad')
  const notUp = v.upstreams.reduce((n, u) => n + u.endpoints.filter((e) => e.state !== 'up').length, 0)
  const summary = `<p id="summary" class="${bad ? 'bad' : v.errors_window > 0 ? 'warn' : 'ok'}">` +
    `${v.errors_window} gateway error${v.errors_window === 1 ? '' : 's'} in the last minute · ${notUp} endpoint${notUp === 1 ? '' : 's'} not up · ${v.failures_total} failures since start · ` +
    `updated <time datetime="${esc(v.at)}">${esc(v.at.slice(11, 19))}</time> UTC</p>`
  const table = '<table id="upstreams" class="grid"><thead><tr><th>endpoint</th><th>state</th><th>reason</th><th title="since when the state holds">since</th>' +
    '<th title="requests in flight now">in flight</th><th title="requests per second, last minute">req/s</th><th title="median duration, last minute, ms">p50 ms</th>' +
    '<th title="99th percentile duration, last minute, ms">p99 ms</th><th title="gateway errors / requests, last minute">err %</th><th>errors last minute by cause</th>' +
    '<th title="gateway errors, last hour">err 1h</th><th title="requests sent since the pool started">requests</th><th title="outlier ejections since the pool started">ejections</th></tr></thead>' +
    v.upstreams.map((u) => upstreamBody(u, now)).join('') + '</table>'
  const byEndpoint = v.errors.by_endpoint.length === 0
    ? '<p class="none">No gateway error in the last hour.</p>'
    : '<table id="by-endpoint" class="grid"><thead><tr><th>upstream</th><th>endpoint</th><th>errors 1h</th><th>by cause</th></tr></thead><tbody>' +
      v.errors.by_endpoint.map((e) => `<tr><td>${esc(e.upstream)}</td><td class="name">${esc(e.endpoint)}</td><td class="num">${e.total}</td><td class="causes">${causesCell(e.causes)}</td></tr>`).join('') + '</tbody></table>'
  const feed = v.failures.length === 0
    ? '<p class="none">No gateway failure yet.</p>'
    : '<div class="feedhead"><span>time (UTC)</span><span>request ID</span><span>route</span><span>upstream endpoint</span><span>cause</span><span>status</span><span>timings</span></div>' + v.failures.map(failureItem).join('')
  const routes = '<table id="routes" class="grid"><thead><tr><th>route</th><th>upstream</th><th title="requests per second, last minute">req/s</th><th>requests 1h</th><th title="cache hits / lookups, last hour">cache hit %</th><th>lookups 1h</th><th title="requests refused by a rate limit or an access rule (http_request_denied)">denied 1m</th><th>denied 1h</th></tr></thead><tbody>' +
    v.routes.map((r) => `<tr class="${r.denied_window > 0 ? 'warn' : 'ok'}"><td class="name">${esc(r.name)}</td><td>${esc(r.upstream ?? '–')}</td><td class="num">${fmtRate(r.requests_per_s)}</td><td class="num">${r.requests_hour}</td>` +
      `<td class="num">${r.cache ? fmtPct(r.cache_hit_ratio) : 'off'}</td><td class="num">${r.cache ? r.cache_lookups_hour : ''}</td>` +
      `<td class="num">${r.denied_window}</td><td class="num">${r.denied_hour}</td></tr>`).join('') + '</tbody></table>'
  const series = JSON.stringify({ times: v.errors.times, causes: v.errors.causes }).replace(/</g, '\\u003c')
  return `${summary}<h2>Upstreams and endpoints</h2>${table}` +
    `<h2>Gateway errors by endpoint, last hour</h2>${byEndpoint}` +
    `<h2>Failure feed <small>(latest ${v.failures.length}, newest first; open a row for the cause and what to run)</small></h2><div id="feed">${feed}</div>` +
    `<h2>Routes</h2>${routes}<script type="application/json" id="series">${series}</script>`
}

/** The whole page around {@link renderSections}. */
export function renderPage(v: StatsView): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Portico</title><meta name="viewport" content="width=device-width, initial-scale=1">` +
    '<link rel="icon" href="data:,"><link rel="stylesheet" href="/assets/uPlot.min.css"><link rel="stylesheet" href="/assets/dashboard.css">' +
    '<noscript><meta http-equiv="refresh" content="5"></noscript>' +
    '<script src="/assets/uPlot.iife.min.js" defer></script><script src="/assets/dashboard.js" defer></script></head><body>' +
    '<header><h1>Portico</h1><span id="live" class="live" title="refreshes every second">live</span> <a href="/stats">/stats</a> <a href="/metrics">/metrics</a> <a href="/failures">/failures</a></header>' +
    '<h2>Gateway errors by cause, last hour <small>(10 s buckets, stacked)</small></h2><div id="chart" class="chart"></div>' +
    `<main id="sections">${renderSections(v)}</main></body></html>`
}

/** The sign-in page: one password field for the token of `admin.token_file`. */
export function renderLogin(message: string | null): string {
  return '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Portico: sign in</title><link rel="icon" href="data:,"></head><body>' +
    '<h1>Portico admin</h1>' + (message === null ? '' : `<p><b>${esc(message)}</b></p>`) +
    '<form method="post" action="/login"><label>Token of admin.token_file: <input type="password" name="token" autocomplete="current-password" autofocus></label> <button>Sign in</button></form>' +
    '<p>The token is exchanged for a session cookie (HttpOnly, SameSite=Strict) that opens the dashboard and the API\'s reads.</p></body></html>'
}
