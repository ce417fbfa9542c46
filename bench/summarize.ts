/**
 * Turns the wrk outputs of one bench run into a markdown table (stdout) and a JSON
 * file. Usage: `node bench/summarize.ts baseline|cache|https|failover RUNS_TSV OUT_JSON`.
 *
 * RUNS_TSV has one line per target: `name<TAB>wrk output files<TAB>note`, the files
 * comma-separated, one per round (`…-wrk-NAME-ROUND.txt`); an empty file column means
 * the target could not be measured (the note says why). Each wrk output holds one
 * `BENCH_JSON {...}` line from report.lua or count.lua. Run settings come from the
 * BENCH_* environment variables that run.sh exports; BENCH_CHECKS holds the lines of
 * what run.sh verified (cache hits, TLS version), one a line, kept in the JSON.
 *
 * baseline, cache and https are throughput runs, summarized alike. Figures per target:
 * requests/s over all rounds together, and the median over rounds of each round's p50
 * and p99. The Portico/nginx ratios are taken round by round (the two were measured
 * seconds apart) and the median is reported, with the lowest and highest round beside
 * it to show how noisy the machine was.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'

const THROUGHPUT = ['baseline', 'cache', 'https', 'workers'] as const
type Mode = (typeof THROUGHPUT)[number] | 'failover'
type Wrk = Record<string, any>
interface Run { target: string; note: string; rounds: Wrk[] }

const [mode, runsPath, outPath] = process.argv.slice(2) as [Mode, string, string]
const throughputRun = (THROUGHPUT as readonly string[]).includes(mode)
if ((!throughputRun && mode !== 'failover') || !runsPath || !outPath) {
  console.error('usage: node bench/summarize.ts baseline|cache|https|workers|failover RUNS_TSV OUT_JSON')
  process.exit(2)
}

/** Reads the BENCH_JSON line that report.lua / count.lua printed, or null. */
function readWrk(file: string): Wrk | null {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return null
  }
  const line = text.split('\n').find((l) => l.startsWith('BENCH_JSON '))
  return line ? JSON.parse(line.slice('BENCH_JSON '.length)) : null
}

/** The round number in `…-wrk-NAME-ROUND.txt` (0 when there is none). */
const roundOf = (file: string) => Number(/-(\d+)\.txt$/.exec(file)?.[1] ?? 0)

const runs: Run[] = readFileSync(runsPath, 'utf8').split('\n').filter(Boolean).map((line) => {
  const [target, list = '', note = ''] = line.split('\t')
  const files = list.split(',').filter(Boolean).sort((a, b) => roundOf(a) - roundOf(b))
  const rounds = files.map(readWrk).filter((w): w is Wrk => w !== null)
  const missing = files.length - rounds.length
  return { target, note: [note, missing ? `${missing} wrk run(s) printed no result` : ''].filter(Boolean).join('; '), rounds }
})

const env = process.env
const settings = {
  duration_s: Number(env.BENCH_DURATION),
  rounds: Number(env.BENCH_ROUNDS),
  slice_s: Number(env.BENCH_SLICE),
  connections: Number(env.BENCH_CONNECTIONS),
  threads: Number(env.BENCH_THREADS),
  backend: env.BENCH_BACKEND,
  pinning: env.BENCH_PINNING,
  versions: {
    node: env.BENCH_VERSION_NODE, nginx: env.BENCH_VERSION_NGINX,
    haproxy: env.BENCH_VERSION_HAPROXY, wrk: env.BENCH_VERSION_WRK,
  },
  ...(env.BENCH_CHECKS?.trim() ? { checks: env.BENCH_CHECKS.trim().split('\n') } : {}),
}

const fmt = (n: number, digits: number) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const ms = (us: number) => us / 1000
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const rps = (w: Wrk) => w.requests / (w.duration_us / 1e6)
const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits

function throughput(scenario: Mode): object {
  const rows = runs.map(({ target, note, rounds }) => {
    if (rounds.length === 0) return { target, requests_per_s: null, p50_ms: null, p99_ms: null, errors: null, note }
    const sum = (f: (w: Wrk) => number) => rounds.reduce((acc, w) => acc + f(w), 0)
    return {
      target,
      requests_per_s: round(sum((w) => w.requests) / (sum((w) => w.duration_us) / 1e6), 1),
      p50_ms: round(ms(median(rounds.map((w) => w.p50_us)))),
      p90_ms: round(ms(median(rounds.map((w) => w.p90_us)))),
      p99_ms: round(ms(median(rounds.map((w) => w.p99_us)))),
      max_ms: round(ms(Math.max(...rounds.map((w) => w.max_us)))),
      requests: sum((w) => w.requests),
      errors: sum((w) => w.errors.connect + w.errors.read + w.errors.write + w.errors.timeout + w.errors.status),
      rounds: rounds.map((w) => ({ requests_per_s: round(rps(w), 1), p50_ms: round(ms(w.p50_us)), p99_ms: round(ms(w.p99_us)) })),
      note,
    }
  })
  const portico = runs.find((r) => r.target === 'portico')?.rounds ?? []
  const nginx = runs.find((r) => r.target === 'nginx')?.rounds ?? []
  const n = Math.min(portico.length, nginx.length)
  const spread = (xs: number[]) => ({ median: round(median(xs)), min: round(Math.min(...xs)), max: round(Math.max(...xs)) })
  const ratios = n > 0
    ? {
        throughput: spread(portico.slice(0, n).map((p, i) => rps(p) / rps(nginx[i]))),
        p99: spread(portico.slice(0, n).map((p, i) => p.p99_us / nginx[i].p99_us)),
      }
    : null

  console.log(`| target | requests/s | p50 (ms) | p99 (ms) | errors |`)
  console.log(`|---|---:|---:|---:|---:|`)
  for (const r of rows) {
    if (r.requests_per_s === null) console.log(`| ${r.target} | — | — | — | ${r.note || 'not measured'} |`)
    else console.log(`| ${r.target} | ${fmt(r.requests_per_s, 0)} | ${fmt(r.p50_ms!, 2)} | ${fmt(r.p99_ms!, 2)} | ${r.errors}${r.note ? ` (${r.note})` : ''} |`)
  }
  if (scenario === 'workers') {
    // Its own ratios follow (workerRatios).
  } else if (ratios) {
    const show = (r: { median: number; min: number; max: number }) => `${r.median.toFixed(2)}× (rounds ${r.min.toFixed(2)}–${r.max.toFixed(2)})`
    console.log(`| **Portico / nginx** | ${show(ratios.throughput)} | | ${show(ratios.p99)} | |`)
    console.log('')
    console.log('Ratios are medians of per-round ratios; throughput above 1 and p99 below 1 mean Portico did better.')
  } else {
    console.log('')
    console.log('Portico / nginx: no ratio, one of the two was not measured.')
  }
  if (scenario === 'workers') return { scenario, ...settings, results: rows, ratios: workerRatios() }
  return { scenario, ...settings, results: rows, portico_over_nginx: ratios }
}

/**
 * The workers scenario's ratios, each the median of per-round ratios (the two targets were
 * measured seconds apart in each round): how each proxy scales from 1 to 2 workers, and
 * how Portico compares with nginx at each worker count. Printed as a second table.
 */
function workerRatios(): Record<string, { throughput: { median: number; min: number; max: number }; p99: { median: number; min: number; max: number } } | null> {
  const roundsOf = (t: string) => runs.find((r) => r.target === t)?.rounds ?? []
  const spread = (xs: number[]) => ({ median: round(median(xs)), min: round(Math.min(...xs)), max: round(Math.max(...xs)) })
  const ratio = (a: string, b: string) => {
    const x = roundsOf(a)
    const y = roundsOf(b)
    const n = Math.min(x.length, y.length)
    if (n === 0) return null
    return { throughput: spread(x.slice(0, n).map((w, i) => rps(w) / rps(y[i]))), p99: spread(x.slice(0, n).map((w, i) => w.p99_us / y[i].p99_us)) }
  }
  const out = {
    'portico2/portico1': ratio('portico2', 'portico1'),
    'nginx2/nginx1': ratio('nginx2', 'nginx1'),
    'portico1/nginx1': ratio('portico1', 'nginx1'),
    'portico2/nginx2': ratio('portico2', 'nginx2'),
  }
  console.log('')
  console.log('| ratio | requests/s | p99 |')
  console.log('|---|---:|---:|')
  const show = (r: { median: number; min: number; max: number }) => `${r.median.toFixed(2)}× (rounds ${r.min.toFixed(2)}–${r.max.toFixed(2)})`
  for (const [name, r] of Object.entries(out)) console.log(r === null ? `| ${name} | — | — |` : `| ${name} | ${show(r.throughput)} | ${show(r.p99)} |`)
  const a = out['portico2/nginx2']
  const b = out['portico1/nginx1']
  if (a !== null && b !== null) {
    console.log('')
    console.log(`Portico(2)/nginx(2) ${a.throughput.median >= b.throughput.median ? 'is not below' : 'is below'} Portico(1)/nginx(1) in this run (${a.throughput.median.toFixed(2)}× against ${b.throughput.median.toFixed(2)}×).`)
  }
  return out
}

function failover(): object {
  const rows = runs.map(({ target, note, rounds: [wrk] }) => {
    if (!wrk) return { target, requests: null, failed: null, non2xx: null, socket_errors: null, statuses: null, note }
    return {
      target,
      requests: wrk.requests,
      failed: wrk.non2xx + wrk.socket_errors,
      non2xx: wrk.non2xx,
      socket_errors: wrk.socket_errors,
      statuses: wrk.statuses,
      socket_error_kinds: wrk.errors,
      p99_ms: round(ms(wrk.p99_us)),
      max_ms: round(ms(wrk.max_us)),
      note,
    }
  })
  console.log(`| proxy | requests | failed | non-2xx | socket errors | p99 (ms) | max (ms) | note |`)
  console.log(`|---|---:|---:|---:|---:|---:|---:|---|`)
  for (const r of rows) {
    if (r.requests === null) { console.log(`| ${r.target} | — | — | — | — | — | — | ${r.note || 'not measured'} |`); continue }
    const codes = Object.entries(r.statuses!).map(([code, n]) => `${n}× ${code}`).join(', ')
    const note = [codes && `statuses: ${codes}`, r.note].filter(Boolean).join('; ')
    console.log(`| ${r.target} | ${fmt(r.requests, 0)} | ${r.failed} | ${r.non2xx} | ${r.socket_errors} | ${fmt(r.p99_ms!, 2)} | ${fmt(r.max_ms!, 2)} | ${note} |`)
  }
  return {
    scenario: 'failover', ...settings,
    kill_after_s: Number(env.BENCH_KILL_AFTER), backends: 3,
    results: rows,
  }
}

const report = throughputRun ? throughput(mode) : failover()
mkdirSync(dirname(outPath), { recursive: true })
writeFileSync(outPath, JSON.stringify({ generated_at: new Date().toISOString(), ...report }, null, 2) + '\n')
