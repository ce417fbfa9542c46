/**
 * Memory per process: RSS (and PSS, the share of pages also mapped by other processes) of
 * one Portico process and of one nginx worker, idle and under load, in front of the same
 * backend. Usage: `bash bench/run.sh memory` or `node bench/memory.ts`.
 *
 * Idle is read 2 s after the listener is up; under load is the peak of samples taken every
 * 250 ms during a bounded run (wrk when installed, else a Node.js keep-alive client) of
 * MEMORY_DURATION seconds (default 10) with MEMORY_CONNECTIONS connections (default 64).
 * Portico runs with `--workers 1` (one process) and `--workers 2` (a primary and two
 * workers, one row each; MEMORY_WORKERS=1,2 sets the list), as `npx portico serve` would
 * (bin/portico.js, the built dist/ when up to date),
 * quick mode; MEMORY_NODE_FLAGS adds Node.js/V8 flags to it (to compare them), MEMORY_NGINX=0
 * leaves nginx out. Everything listens on 127.0.0.1 only.
 * On a 2-core host the proxies share cores with the load generator and the backend.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs'
import { request, Agent } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, waitListening } from '../test/helpers/ports.ts'

const ROOT = new URL('..', import.meta.url).pathname
const DURATION_S = Number(process.env.MEMORY_DURATION ?? 10)
const CONNECTIONS = Number(process.env.MEMORY_CONNECTIONS ?? 64)
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p))
const WRK = ['/usr/bin/wrk', '/usr/local/bin/wrk'].find((p) => existsSync(p))

interface Sample { rssKb: number; pssKb: number }
interface Row { name: string; idle: Sample; load: Sample; after: Sample; requests: number; errors: number; cpuUsPerRequest: number }

function sample(pid: number): Sample {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0)
  return { rssKb: kb('Rss'), pssKb: kb('Pss') }
}

/** CPU time (user + system) of a process so far, in µs, from /proc/PID/stat (clock ticks of 10 ms). */
function cpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Runs the load against `port` for DURATION_S, calling `tick` every 250 ms; returns request and error counts. */
async function load(port: number, tick: () => void): Promise<{ requests: number; errors: number }> {
  const timer = setInterval(tick, 250)
  try {
    if (WRK) {
      const out = await new Promise<string>((resolve) => {
        const w = spawn(WRK, ['-t1', `-c${CONNECTIONS}`, `-d${DURATION_S}s`, `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'inherit'] })
        let text = ''
        w.stdout.on('data', (d) => { text += d })
        w.on('close', () => resolve(text))
      })
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
      const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) + (/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)?.slice(1).reduce((a, b) => a + Number(b), 0) ?? 0)
      return { requests, errors }
    }
    const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS })
    const end = Date.now() + DURATION_S * 1000
    let requests = 0
    let errors = 0
    const one = (): Promise<void> => new Promise((resolve) => {
      request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        if (res.statusCode !== 200) errors++
        res.resume().on('end', () => { requests++; resolve() })
      }).on('error', () => { errors++; resolve() }).end()
    })
    await Promise.all(Array.from({ length: CONNECTIONS }, async () => { while (Date.now() < end) await one() }))
    agent.destroy()
    return { requests, errors }
  } finally {
    clearInterval(timer)
  }
}

/**
 * Idle samples of each process, then one load run against `port` sampling all of them;
 * one row a process. Requests and CPU per request: the whole run's, CPU summed over the processes.
 */
async function measure(processes: Array<{ name: string; pid: number }>, port: number): Promise<Row[]> {
  await sleep(2000)
  const idle = processes.map((p) => sample(p.pid))
  const peak = idle.slice()
  const cpu0 = processes.map((p) => cpuUs(p.pid))
  const { requests, errors } = await load(port, () => {
    processes.forEach((p, i) => {
      const s = sample(p.pid)
      if (s.rssKb > peak[i].rssKb) peak[i] = s
    })
  })
  const cpu = processes.reduce((n, p, i) => n + cpuUs(p.pid) - cpu0[i], 0)
  await sleep(1000)
  return processes.map((p, i) => ({ name: p.name, idle: idle[i], load: peak[i], after: sample(p.pid), requests, errors, cpuUsPerRequest: cpu / Math.max(1, requests) }))
}

/** The child processes of `pid`, oldest first. */
function childrenOf(pid: number): number[] {
  return spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).map(Number).sort((a, b) => a - b)
}

const children: ChildProcess[] = []
const tmp = mkdtempSync(join(tmpdir(), 'portico-memory-'))
const node = process.execPath
try {
  const backendPort = await freePort()
  children.push(spawn(node, [join(ROOT, 'bench/backend.ts'), String(backendPort)], { stdio: 'ignore' }))
  await waitListening(backendPort, Date.now() + 15_000, () => 'the backend')
  const rows: Row[] = []

  const flags = (process.env.MEMORY_NODE_FLAGS ?? '').split(' ').filter(Boolean)
  for (const workers of (process.env.MEMORY_WORKERS ?? '1,2').split(',').map(Number)) {
    const porticoPort = await freePort()
    const portico = spawn(node, [...flags, join(ROOT, 'bin/portico.js'), 'serve', '--workers', String(workers), '--listen', `127.0.0.1:${porticoPort}`, '--to', `http://127.0.0.1:${backendPort}`], { stdio: ['ignore', 'ignore', 'ignore'] })
    children.push(portico)
    await waitListening(porticoPort, Date.now() + 15_000, () => 'Portico')
    const pid = portico.pid!
    const processes = workers === 1
      ? [{ name: 'portico, workers: 1 (one process)', pid }]
      : [{ name: `portico, workers: ${workers}: primary`, pid }, ...childrenOf(pid).map((w, i) => ({ name: `portico, workers: ${workers}: worker ${i + 1}`, pid: w }))]
    rows.push(...await measure(processes, porticoPort))
    portico.kill('SIGTERM')
    await new Promise((r) => portico.once('exit', r))
  }

  if (NGINX && process.env.MEMORY_NGINX !== '0') {
    const nginxPort = await freePort()
    const conf = join(tmp, 'nginx.conf')
    writeFileSync(conf, `worker_processes 1;\ndaemon off;\npid ${tmp}/nginx.pid;\nerror_log ${tmp}/error.log;\nevents { worker_connections 1024; }\nhttp {\n  access_log off;\n  client_body_temp_path ${tmp}/body; proxy_temp_path ${tmp}/proxy; fastcgi_temp_path ${tmp}/fcgi; uwsgi_temp_path ${tmp}/uwsgi; scgi_temp_path ${tmp}/scgi;\n  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }\n  server { listen 127.0.0.1:${nginxPort}; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }\n}\n`)
    const master = spawn(NGINX, ['-c', conf, '-p', tmp], { stdio: 'ignore' })
    children.push(master)
    await waitListening(nginxPort, Date.now() + 15_000, () => 'nginx')
    rows.push(...await measure([{ name: 'nginx, worker_processes 1: worker', pid: childrenOf(master.pid!)[0] }], nginxPort))
  }

  const mb = (kb: number): string => (kb / 1024).toFixed(1)
  console.log(`\nMemory per process, MB (RSS / PSS); load: ${DURATION_S} s, ${CONNECTIONS} connections, ${WRK ? 'wrk' : 'Node.js client'}; node ${process.versions.node}`)
  console.log('| process | idle RSS | idle PSS | load RSS (peak) | load PSS | after load RSS | requests | errors | CPU µs/request (all processes) |')
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const r of rows) console.log(`| ${r.name} | ${mb(r.idle.rssKb)} | ${mb(r.idle.pssKb)} | ${mb(r.load.rssKb)} | ${mb(r.load.pssKb)} | ${mb(r.after.rssKb)} | ${r.requests} | ${r.errors} | ${r.cpuUsPerRequest.toFixed(1)} |`)
} finally {
  for (const c of children) c.kill('SIGTERM')
  await sleep(300)
  rmSync(tmp, { recursive: true, force: true })
}
