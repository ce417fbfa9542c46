// End to end: real nginx in front of lab backends, then doctor reads its config and the error.log it wrote.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLab, type FaultMode, type LabOptions } from '../../src/lab/index.ts'
import { runDoctor } from '../../src/doctor/run.ts'
import type { CauseType } from '../../src/failures/causes.ts'
import { startDnsServer, type TestDnsServer } from './probes/dns-server.ts'
import { freePort, waitListening } from '../helpers/ports.ts'

const NGINX = '/usr/sbin/nginx'
const skip = existsSync(NGINX) ? false : `nginx not installed at ${NGINX} (apt-get install nginx-light)`

function get(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 2000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
      res.on('error', () => resolve(0))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
  })
}

interface Case {
  name: string
  mode: FaultMode
  options?: LabOptions
  /** `http { }` contents given the backend host:port and the DNS server. */
  http: (backend: string, dns: TestDnsServer) => string
  expect: CauseType
  /** A directive the top finding's fix must name. */
  directive: RegExp
  /** What nginx must have written to error.log, proving the fault was reproduced. */
  logLine?: RegExp
}

const location = (extra: string) => `location / { ${extra} }`
const CASES: Case[] = [
  { name: 'refused', mode: 'refuse', expect: 'connection_refused', directive: /`(server|proxy_pass)/, logLine: /Connection refused/,
    http: (b) => `upstream app { server ${b}; }\nserver { listen 127.0.0.1:NGINX_PORT; ${location('proxy_pass http://app;')} }` },
  { name: 'hang → 504', mode: 'hang', expect: 'http_response_timeout', directive: /proxy_read_timeout/, logLine: /upstream timed out/,
    http: (b) => `server { listen 127.0.0.1:NGINX_PORT; ${location(`proxy_pass http://${b}; proxy_read_timeout 300ms;`)} }` },
  { name: 'keep-alive race', mode: 'keepalive-race', options: { keepAliveTimeoutMs: 200 }, expect: 'connection_terminated', directive: /keepalive_timeout/,
    http: (b) => `upstream app { server ${b}; keepalive 4; }\nserver { listen 127.0.0.1:NGINX_PORT; ${location('proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";')} }` },
  { name: 'big header', mode: 'big-header', expect: 'http_response_header_section_size', directive: /proxy_buffer_size/, logLine: /too big header/,
    http: (b) => `server { listen 127.0.0.1:NGINX_PORT; ${location(`proxy_pass http://${b};`)} }` },
  { name: 'name that does not resolve', mode: 'dns-invalid', expect: 'dns_error', directive: /resolver/, logLine: /could not be resolved/,
    http: (b, dns) => `server { listen 127.0.0.1:NGINX_PORT; resolver 127.0.0.1:${dns.port} ipv6=off; resolver_timeout 1s; set $backend ${b}; ${location('proxy_pass http://$backend;')} }` },
]

for (const c of CASES) {
  test(`nginx in front of ${c.name}: doctor --nginx --log names ${c.expect} and the nginx directive`, { skip, timeout: 30_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'portico-nginx-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const dns = await startDnsServer({})
    t.after(() => dns.close())
    const lab = await startLab(c.mode, c.options)
    t.after(() => lab.close())
    const port = await freePort()
    const errorLog = join(dir, 'error.log')
    const conf = join(dir, 'nginx.conf')
    const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `${k}_temp_path ${join(dir, k)};`).join('\n')
    await writeFile(conf, `worker_processes 1;\npid ${join(dir, 'nginx.pid')};\nerror_log ${errorLog} info;\nevents { worker_connections 64; }\nhttp {\naccess_log ${join(dir, 'access.log')};\n${temp}\n${c.http(`${lab.host}:${lab.port}`, dns).replace('NGINX_PORT', String(port))}\n}\n`)
    const nginx: ChildProcess = spawn(NGINX, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    nginx.stderr?.on('data', (d) => (stderr += d))
    t.after(async () => {
      if (nginx.exitCode === null) {
        nginx.kill('SIGTERM')
        await new Promise((r) => nginx.once('exit', r))
      }
    })
    await waitListening(port, Date.now() + 5000).catch((e) => { throw new Error(`${e.message}: ${stderr}`) })
    for (let i = 0; i < 3; i++) {
      await get(port)
      await new Promise((r) => setTimeout(r, 250))
    }
    const report = await runDoctor({ nginx: conf, log: [errorLog], timeoutMs: 500, samples: 2, keepaliveLimitMs: 1000, dns: { lookup: dns.lookup, resolver: dns.resolver }, diskPaths: [] })
    assert.equal(report.system, 'nginx')
    const top = report.findings[0]
    const log = await readFile(errorLog, 'utf8')
    assert.equal(top.cause, c.expect, `top: ${JSON.stringify(top, null, 1)}\nerror.log:\n${log.slice(-2000)}`)
    assert.match(top.fix, c.directive)
    if (c.logLine) assert.match(log, c.logLine)
  })
}
