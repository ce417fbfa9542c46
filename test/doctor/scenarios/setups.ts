/**
 * 502/504 set-ups for the doctor scenario suite: a faulty backend (a lab fault mode or a
 * small server made here), the nginx `http { }` contents and the Portico upstream that put
 * a proxy in front of it, what the top finding must name and the value its fix must carry.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import { join } from 'node:path'
import { makeCA, makeCertificate, startLab, type FaultMode, type LabOptions } from '../../../src/lab/index.ts'
import type { CauseType } from '../../../src/failures/causes.ts'
import type { Finding } from '../../../src/doctor/finding.ts'
import type { TestDnsServer } from '../probes/dns-server.ts'

/** A running backend. */
export interface Backend {
  /** `host:port` or `unix:/path`. */
  address: string
  /** What Portico's `endpoints` lists. */
  endpoint: string
  /** For TLS backends: a CA file the proxy is told to trust. */
  caFile?: string
  close(): Promise<void>
}

/** What a set-up gets to build its backend and configs. */
export interface SetupContext {
  dir: string
  dns: TestDnsServer
}

/** One set-up. */
export interface Setup {
  name: string
  backend(ctx: SetupContext): Promise<Backend>
  /** `http { }` contents with one `listen 127.0.0.1:NGINX_PORT;` (the test picks the port). Absent: no nginx variant. */
  nginx?: (b: Backend, ctx: SetupContext) => string
  /** Extra YAML lines of the Portico upstream (indented 4), besides `endpoints`. Absent: no Portico variant. */
  portico?: (b: Backend, ctx: SetupContext) => string[]
  /** The top finding's cause; null for application-made errors. */
  expect: CauseType | null
  /** Portico's top cause when it differs. */
  porticoExpect?: CauseType | null
  /** Checks on the top finding's fix for nginx and for Portico (a directive or key with a value). */
  nginxFix?: (f: Finding) => void
  porticoFix?: (f: Finding) => void
  /** The error.log line nginx must have written, proving the fault was reproduced. */
  logLine?: RegExp
  /** Doctor's --timeout for this set-up, ms. Default 1500. */
  timeoutMs?: number
  /** Send the requests through the proxy (`--via`) too. */
  via?: boolean
  /** More checks on the whole report. */
  report?: (findings: Finding[]) => void
  /** Apply the top fix as written (nginx, or nginx and Portico) and expect a 200 through the proxy after it. */
  applyFix?: 'nginx' | 'both'
}

function lab(mode: FaultMode, options?: LabOptions): (ctx: SetupContext) => Promise<Backend> {
  return async () => {
    const l = await startLab(mode, options)
    const address = `${l.host}:${l.port}`
    return { address, endpoint: l.url, close: () => l.close() }
  }
}

async function listen(server: http.Server | https.Server, where: string | { port: number; host: string }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    if (typeof where === 'string') server.listen(where, () => resolve())
    else server.listen(where.port, where.host, () => resolve())
  })
}

function closer(server: http.Server | https.Server): () => Promise<void> {
  return () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
}

/** An application that answers `status` itself (a broken dependency behind it, or its own overload shedding). */
function appMade(status: number): () => Promise<Backend> {
  return async () => {
  const server = http.createServer((_req, res) => { res.writeHead(status, { 'content-type': 'text/plain' }); res.end('payment service unavailable') })
  await listen(server, { port: 0, host: '127.0.0.1' })
  const port = (server.address() as { port: number }).port
  return { address: `127.0.0.1:${port}`, endpoint: `http://127.0.0.1:${port}`, close: closer(server) }
  }
}

/** An HTTPS backend whose certificate is expired (signed by a CA the proxy trusts) or untrusted (self-signed). */
function tlsBackend(kind: 'expired' | 'untrusted'): (ctx: SetupContext) => Promise<Backend> {
  return async (ctx) => {
    const ca = makeCA()
    const pair = kind === 'expired'
      ? makeCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'], expired: true, issuer: ca })
      : makeCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'] })
    // The proxy trusts `ca`: for the expired one it is the issuer, for the self-signed one it is not.
    const caFile = join(ctx.dir, `${kind}-ca.pem`)
    await writeFile(caFile, ca.cert)
    const server = https.createServer({ key: pair.key, cert: pair.cert }, (_req, res) => res.end('ok'))
    await listen(server, { port: 0, host: '127.0.0.1' })
    const port = (server.address() as { port: number }).port
    return { address: `127.0.0.1:${port}`, endpoint: `https://127.0.0.1:${port}`, caFile, close: closer(server) }
  }
}

/** A unix socket backend: missing (nothing created) or forbidden (mode 0600, owned by root, nginx's workers run as nobody). */
function unixBackend(kind: 'missing' | 'forbidden'): (ctx: SetupContext) => Promise<Backend> {
  return async (ctx) => {
    const sockDir = join(ctx.dir, `run-${kind}`)
    await mkdir(sockDir, { recursive: true })
    await chmod(sockDir, 0o755)
    const path = join(sockDir, 'app.sock')
    if (kind === 'missing') return { address: `unix:${path}`, endpoint: `unix:${path}`, close: async () => {} }
    const server = http.createServer((_req, res) => res.end('ok'))
    await listen(server, path)
    await chmod(path, 0o600)
    return { address: `unix:${path}`, endpoint: `unix:${path}`, close: closer(server) }
  }
}

const server = (location: string, extra = '') => `server { listen 127.0.0.1:NGINX_PORT; ${extra} location / { ${location} } }`
const proxy = (b: Backend, extra = '') => server(`proxy_pass http://${b.address}; ${extra}`)

/** The duration in a fix (`proxy_read_timeout 3s;`, `timeouts.idle: 3s`), ms. */
export function durationIn(fix: string, key: RegExp): number {
  const m = new RegExp(`${key.source}[: ]+(\\d+)(ms|s|m)\\b`).exec(fix)
  if (!m) throw new Error(`no ${key.source} value in: ${fix}`)
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : 60_000)
}

function assertThat(ok: boolean, message: string): void {
  if (!ok) throw new Error(message)
}

/** A timeout fix of `key` whose value is above `aboveMs` (and sane). */
function timeoutFix(key: RegExp, aboveMs: number): (f: Finding) => void {
  return (f) => {
    const v = durationIn(f.fix, key)
    assertThat(v > aboveMs && v <= 4 * aboveMs + 2000, `${key.source} ${v}ms should be above ${aboveMs}ms: ${f.fix}`)
  }
}

/** A keep-alive fix whose value is below the idle close it states it measured, which is the lab's 300 ms (a loaded machine may add some). */
function keepaliveBelowClose(f: Finding, key: RegExp, block: RegExp): void {
  const v = durationIn(f.fix, key)
  const measured = Number(/measured idle close of (\d+)ms/.exec(f.fix)?.[1])
  assertThat(measured >= 290 && measured < 1500 && v < measured && v >= 0.5 * measured && block.test(f.fix), f.fix)
}

function mentions(re: RegExp): (f: Finding) => void {
  return (f) => assertThat(re.test(f.fix), `fix should match ${re}: ${f.fix}`)
}

/** Every set-up of the suite. */
export const SETUPS: Setup[] = [
  {
    name: 'refused port', backend: lab('refuse'), expect: 'connection_refused', logLine: /\(111: Connection refused\) while connecting to upstream/,
    nginx: (b) => `upstream app { server ${b.address}; }\n${server('proxy_pass http://app;')}`, portico: () => [],
    nginxFix: mentions(/Start the application on 127\.0\.0\.1:\d+.*`proxy_pass http:\/\/app;` in the `location \/` block.*`server` lines of the `upstream app` block/), porticoFix: mentions(/upstreams\.lab\.endpoints/),
  },
  {
    name: 'wrong port (an SSH server)', backend: lab('garbage'), expect: 'http_protocol_error', logLine: /upstream sent no valid HTTP\/1\.0 header/,
    nginx: (b) => proxy(b), portico: () => [], nginxFix: mentions(/HTTP port of the application/), porticoFix: mentions(/HTTP port of the application/),
  },
  {
    name: 'application-made 502', backend: appMade(502), expect: null, via: true,
    nginx: (b) => proxy(b), portico: () => [], nginxFix: mentions(/application/), porticoFix: mentions(/application/),
  },
  {
    name: 'TLS behind http://', backend: lab('tls'), expect: 'http_protocol_error',
    nginx: (b) => proxy(b), portico: () => [],
    nginxFix: mentions(/`proxy_pass https:\/\/127\.0\.0\.1:\d+;` in the `location \/` block/), porticoFix: mentions(/`https:\/\/127\.0\.0\.1:\d+` in `upstreams\.lab\.endpoints`/),
    applyFix: 'nginx',
  },
  {
    name: 'plain HTTP behind https://', backend: lab('plain-behind-https'), expect: 'tls_protocol_error', logLine: /SSL_do_handshake\(\) failed/,
    nginx: (b) => server(`proxy_pass https://${b.address};`), portico: () => [],
    nginxFix: mentions(/`proxy_pass http:\/\/127\.0\.0\.1:\d+;`/), porticoFix: mentions(/`http:\/\/127\.0\.0\.1:\d+` in `upstreams\.lab\.endpoints`/),
    applyFix: 'both',
  },
  {
    name: 'expired certificate with proxy_ssl_verify on', backend: tlsBackend('expired'), expect: 'tls_certificate_error', logLine: /certificate has expired/,
    nginx: (b) => server(`proxy_pass https://${b.address}; proxy_ssl_verify on; proxy_ssl_trusted_certificate ${b.caFile}; proxy_ssl_name localhost;`),
    portico: (b) => [`tls: { ca: ${b.caFile}, servername: localhost }`],
    nginxFix: mentions(/Renew the backend certificate \(it expired \d+ days ago\).*`proxy_ssl_verify off;`/), porticoFix: mentions(/Renew the backend certificate.*tls\.insecure_skip_verify/),
  },
  {
    name: 'untrusted certificate with proxy_ssl_verify on', backend: tlsBackend('untrusted'), expect: 'tls_certificate_error', logLine: /upstream SSL certificate verify error/,
    nginx: (b) => server(`proxy_pass https://${b.address}; proxy_ssl_verify on; proxy_ssl_trusted_certificate ${b.caFile}; proxy_ssl_name localhost;`),
    portico: (b) => [`tls: { ca: ${b.caFile}, servername: localhost }`],
    nginxFix: mentions(/`proxy_ssl_trusted_certificate \/path\/to\/ca\.pem;` in the `location \/` block/), porticoFix: mentions(/`upstreams\.lab\.tls\.ca: /),
  },
  {
    name: 'unresolvable name with resolver', backend: lab('dns-invalid'), expect: 'dns_error', logLine: /could not be resolved/,
    nginx: (b, ctx) => `server { listen 127.0.0.1:NGINX_PORT; resolver 127.0.0.1:${ctx.dns.port} ipv6=off; resolver_timeout 1s; set $backend ${b.address}; location / { proxy_pass http://$backend; } }`,
    portico: (_b, ctx) => [`dns: { resolvers: [ "127.0.0.1:${ctx.dns.port}" ] }`],
    nginxFix: mentions(/`resolver`/), porticoFix: mentions(/upstreams\.lab\.dns\.resolvers.*127\.0\.0\.1:\d+/),
  },
  {
    name: 'DNS server that never answers', backend: async () => ({ address: 'silent.test:80', endpoint: 'http://silent.test:80', close: async () => {} }), expect: 'dns_timeout',
    nginx: (b, ctx) => `server { listen 127.0.0.1:NGINX_PORT; resolver 127.0.0.1:${ctx.dns.port} ipv6=off; resolver_timeout 1s; set $backend ${b.address}; location / { proxy_pass http://$backend; } }`,
    portico: (_b, ctx) => [`dns: { resolvers: [ "127.0.0.1:${ctx.dns.port}" ] }`], timeoutMs: 1000,
    nginxFix: mentions(/`resolver_timeout 5s;`/), porticoFix: mentions(/upstreams\.lab\.dns\.resolvers/),
  },
  {
    name: 'resolver that refuses (nothing on its port)', backend: async () => ({ address: 'app.test:8080', endpoint: 'http://app.test:8080', close: async () => {} }), expect: 'dns_error',
    logLine: /(?:send|recv)\(\) failed \(111: Connection refused\) while resolving/,
    nginx: () => 'server { listen 127.0.0.1:NGINX_PORT; resolver 127.0.0.1:9 ipv6=off; resolver_timeout 1s; set $backend app.test:8080; location / { proxy_pass http://$backend; } }',
    portico: () => ['dns: { resolvers: [ "127.0.0.1:9" ] }'],
    nginxFix: mentions(/`resolver`/), porticoFix: mentions(/upstreams\.lab\.dns\.resolvers.*127\.0\.0\.1:9/),
    // The resolver's own socket errors are not the backend refusing connections.
    report: (findings) => assertThat(!findings.some((f) => f.cause === 'connection_refused'), `a connection_refused finding: ${findings.map((f) => `${f.id} ${f.cause}`).join(', ')}`),
  },
  {
    name: 'full listen backlog', backend: lab('connect-timeout'), expect: 'connection_timeout', logLine: /upstream timed out \(110: Connection timed out\) while connecting/,
    nginx: (b) => proxy(b, 'proxy_connect_timeout 500ms;'), portico: () => ['timeouts: { connect: 500ms }'],
    nginxFix: mentions(/listen backlog is full.*`proxy_connect_timeout 5s;`/), porticoFix: mentions(/listen backlog is full.*upstreams\.lab\.timeouts\.connect/),
  },
  {
    name: 'keep-alive race', backend: lab('keepalive-race', { keepAliveTimeoutMs: 300 }), expect: 'connection_terminated',
    nginx: (b) => `upstream app { server ${b.address}; keepalive 4; keepalive_timeout 60s; }\n${server('proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";')}`,
    portico: () => ['keepalive: { idle_timeout: 4s }'],
    nginxFix: (f) => keepaliveBelowClose(f, /keepalive_timeout/, /`upstream app` block/),
    porticoFix: (f) => keepaliveBelowClose(f, /upstreams\.lab\.keepalive\.idle_timeout/, /./),
  },
  {
    name: 'response header too big (20 KB Set-Cookie)', backend: lab('big-header', { headerBytes: 20_000 }), expect: 'http_response_header_section_size', logLine: /upstream sent too big header/,
    nginx: (b) => proxy(b), portico: () => [],
    nginxFix: mentions(/`proxy_buffer_size 32k; proxy_buffers 8 32k; proxy_busy_buffers_size 64k;`/), porticoFix: mentions(/`upstreams\.lab\.max_response_header_size: 32KiB`/),
    applyFix: 'both',
  },
  {
    name: 'reset mid-body', backend: lab('reset-mid-body'), expect: 'http_response_incomplete',
    nginx: (b) => proxy(b), portico: () => [], nginxFix: mentions(/application logs/), porticoFix: mentions(/application logs/),
  },
  {
    name: 'slow body (a chunk every 1.5 s) vs idle timeout 1 s', backend: lab('slow-body', { chunkIntervalMs: 1500, bodyBytes: 3072 }), expect: 'connection_read_timeout', timeoutMs: 3000,
    logLine: /upstream timed out \(110: Connection timed out\) while reading upstream/,
    nginx: (b) => proxy(b, 'proxy_read_timeout 1s; proxy_buffering off;'), portico: () => ['timeouts: { idle: 1s }'],
    nginxFix: timeoutFix(/proxy_read_timeout/, 1500), porticoFix: timeoutFix(/upstreams\.lab\.timeouts\.idle/, 1500),
    applyFix: 'both',
  },
  {
    name: 'slow backend 1.5 s behind a 1 s read timeout', backend: lab('slow', { latencyMs: 1500 }), expect: 'http_response_timeout', timeoutMs: 3500, logLine: /upstream timed out .* while reading response header/,
    nginx: (b) => proxy(b, 'proxy_read_timeout 1s;'), portico: () => ['timeouts: { response_header: 1s }'],
    nginxFix: timeoutFix(/proxy_read_timeout/, 1500), porticoFix: timeoutFix(/upstreams\.lab\.timeouts\.response_header/, 1500),
    applyFix: 'both',
  },
  {
    name: 'slow backend 2.5 s behind a 1 s read timeout', backend: lab('slow', { latencyMs: 2500 }), expect: 'http_response_timeout', timeoutMs: 4000, logLine: /upstream timed out .* while reading response header/,
    nginx: (b) => proxy(b, 'proxy_read_timeout 1s;'), portico: () => ['timeouts: { response_header: 1s }'],
    nginxFix: timeoutFix(/proxy_read_timeout/, 2500), porticoFix: timeoutFix(/upstreams\.lab\.timeouts\.response_header/, 2500),
    applyFix: 'both',
  },
  {
    name: 'backend that never answers', backend: lab('hang'), expect: 'http_response_timeout', logLine: /upstream timed out/,
    nginx: (b) => proxy(b, 'proxy_read_timeout 500ms;'), portico: () => ['timeouts: { response_header: 500ms }'],
    nginxFix: mentions(/stuck workers.*`proxy_read_timeout \d+m?s;`/), porticoFix: mentions(/stuck workers.*upstreams\.lab\.timeouts\.response_header/),
  },
  {
    name: 'reset before the header', backend: lab('reset-before-header'), expect: 'connection_terminated', logLine: /Connection reset by peer/,
    nginx: (b) => proxy(b), portico: () => [], nginxFix: mentions(/application logs/), porticoFix: mentions(/application logs/),
  },
  {
    name: 'closed before the header', backend: lab('close-before-header'), expect: 'connection_terminated', logLine: /upstream prematurely closed connection/,
    nginx: (b) => proxy(b), portico: () => [], nginxFix: mentions(/application logs/), porticoFix: mentions(/application logs/),
  },
  {
    name: 'php-fpm down (fastcgi_pass to a refused port)', backend: lab('refuse'), expect: 'connection_refused', logLine: /Connection refused/,
    nginx: (b) => server(`fastcgi_pass ${b.address}; fastcgi_param SCRIPT_FILENAME /srv/index.php;`),
    nginxFix: mentions(/FastCGI server.*`fastcgi_pass 127\.0\.0\.1:\d+;` in the `location \/` block/),
  },
  {
    name: 'fastcgi_pass to an HTTP server', backend: lab('ok'), expect: 'http_protocol_error', logLine: /FastCGI/,
    nginx: (b) => server(`fastcgi_pass ${b.address}; fastcgi_param SCRIPT_FILENAME /srv/index.php;`),
    nginxFix: mentions(/`proxy_pass http:\/\/127\.0\.0\.1:\d+;` instead of `fastcgi_pass`/),
  },
  {
    name: 'uwsgi_pass to a refused port', backend: lab('refuse'), expect: 'connection_refused', logLine: /Connection refused/,
    nginx: (b) => server(`uwsgi_pass ${b.address};`), nginxFix: mentions(/`uwsgi_pass 127\.0\.0\.1:\d+;` in the `location \/` block/),
  },
  {
    name: 'application-made 503', backend: appMade(503), expect: null, via: true,
    nginx: (b) => proxy(b), portico: () => [], nginxFix: mentions(/application/), porticoFix: mentions(/application/),
  },
  {
    name: 'every server of an upstream block refused', backend: lab('refuse'), expect: 'connection_refused', logLine: /no live upstreams|Connection refused/,
    nginx: (b) => `upstream app { server ${b.address}; server 127.0.0.2:${b.address.split(':')[1]}; }\n${server('proxy_pass http://app;')}`,
    nginxFix: mentions(/`server` lines of the `upstream app` block/),
  },
  {
    name: 'php-fpm socket missing (fastcgi_pass unix:)', backend: unixBackend('missing'), expect: 'connection_refused', logLine: /\(2: No such file or directory\)/,
    nginx: (b) => server(`fastcgi_pass ${b.address}; fastcgi_param SCRIPT_FILENAME /srv/index.php;`),
    nginxFix: mentions(/php-fpm `listen = \/.*app\.sock`.*`fastcgi_pass unix:\/.*app\.sock;` in the `location \/` block/),
  },
  {
    name: 'unix socket missing', backend: unixBackend('missing'), expect: 'connection_refused', logLine: /\(2: No such file or directory\)/,
    nginx: (b) => server(`proxy_pass http://${b.address}:;`), portico: () => [],
    nginxFix: mentions(/creates \/.*app\.sock.*`proxy_pass http:\/\/unix:\/.*app\.sock:;`/), porticoFix: mentions(/creates \/.*app\.sock.*upstreams\.lab\.endpoints/),
  },
  {
    name: 'unix socket forbidden to nginx\'s user', backend: unixBackend('forbidden'), expect: 'connection_refused', logLine: /\(13: Permission denied\)/,
    nginx: (b) => server(`proxy_pass http://${b.address}:;`), nginxFix: mentions(/chmod g\+rw .*app\.sock/),
  },
]
