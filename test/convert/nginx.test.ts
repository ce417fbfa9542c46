/**
 * `portico convert --nginx` without running nginx: what each directive becomes, the
 * file:line comments, the notes for what cannot be converted, and the exit status.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { convertNginxFile, type Conversion } from '../../src/convert/nginx.ts'
import { convertCommand } from '../../src/cli/convert.ts'
import { parseConfig } from '../../src/config/load.ts'

/** Writes the files (the first is the main one) into a temp dir and converts. */
async function convert(t: { after: (fn: () => Promise<void>) => void }, files: Record<string, string>): Promise<Conversion & { dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-convert-unit-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true })
    await writeFile(join(dir, name), text)
  }
  const result = await convertNginxFile(join(dir, Object.keys(files)[0]))
  // Every conversion must load as a valid config.
  parseConfig(result.yaml, 'converted.yaml')
  return { ...result, dir }
}

const SITE = `events {}
http {
  keepalive_timeout 30s;
  client_header_timeout 15s;
  client_max_body_size 20m;
  upstream app {
    random two least_conn;
    server 10.0.0.1:8080 weight=5 max_fails=4 fail_timeout=30s;
    server app2.internal:8080 max_fails=4 fail_timeout=30s;
    keepalive 10;
    keepalive_timeout 15s;
  }
  resolver 10.0.0.53 valid=30s;
  proxy_cache_path /var/cache/nginx keys_zone=pages:10m max_size=64m;
  server {
    listen 443 ssl;
    http2 on;
    server_name api.example.com *.api.example.com;
    ssl_certificate /etc/ssl/api.pem;
    ssl_certificate_key /etc/ssl/api.key;
    ssl_protocols TLSv1.3;
    ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256;
    ssl_stapling_file /etc/ssl/api.ocsp;
    http2_max_concurrent_streams 64;
    add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
    location / {
      proxy_pass https://app;
      proxy_pass_header Server;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate /etc/ssl/ca.pem;
      proxy_connect_timeout 3s;
      proxy_read_timeout 20s;
      proxy_send_timeout 40s;
      proxy_next_upstream error http_503;
      proxy_next_upstream_tries 2;
      proxy_buffer_size 16k;
      proxy_cache pages;
      proxy_cache_use_stale error timeout http_502;
      proxy_cache_lock_timeout 2s;
    }
  }
  server {
    listen 443 ssl;
    server_name www.example.com;
    ssl_certificate /etc/ssl/www.pem;
    ssl_certificate_key /etc/ssl/www.key;
    location /static/ { proxy_pass http://127.0.0.1:9000/assets/; proxy_redirect off; }
  }
}
`

test('listeners, TLS, upstream keys and cache come from their directives, each commented with its file:line', async (t) => {
  const r = await convert(t, { 'nginx.conf': SITE })
  assert.deepEqual(r.notes.filter((n) => n.routing), [])
  assert.equal(r.complete, true)
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.equal(c.listeners.length, 1)
  const l = c.listeners[0]
  assert.equal(l.address, '0.0.0.0:443')
  assert.equal(l.timeouts.keepalive, 30_000)
  assert.equal(l.timeouts.header_read, 15_000)
  assert.equal(l.max_request_body_size, 20 * 1024 * 1024)
  assert.deepEqual(l.tls?.certificates.map((x) => x.cert), ['/etc/ssl/api.pem', '/etc/ssl/www.pem'])
  assert.equal(l.tls?.min_version, 'TLSv1.3')
  assert.deepEqual(l.tls?.alpn, ['h2', 'http/1.1'])
  const api = c.routes.find((x) => x.match.host === 'api.example.com')
  assert.ok(api)
  assert.ok(c.routes.some((x) => x.match.host === '*.api.example.com'))
  assert.ok(c.routes.some((x) => x.match.host === 'www.example.com' && x.match.path_prefix === '/static/' && x.prefix_rewrite === '/assets/'))
  assert.equal(api.host_rewrite, 'app', 'nginx sends Host $proxy_host, the upstream name, by default')
  assert.equal(api.cache.enabled, true)
  assert.deepEqual(api.cache.serve_stale_on.slice(-3), ['connection_timeout', 'http_response_timeout', 502])
  assert.equal(api.cache.collapse_timeout, 2000)
  const up = c.upstreams[api.upstream]
  assert.deepEqual(up.endpoints, [{ url: 'https://10.0.0.1:8080', weight: 5, backup: false }, { url: 'https://app2.internal:8080', weight: 1, backup: false }])
  assert.equal(up.load_balancing, 'least_request', 'random two least_conn is the power of two choices')
  assert.deepEqual(up.timeouts, { connect: 3000, response_header: 20_000, idle: 40_000 })
  assert.deepEqual(up.retries.on, ['connect_failure', 'reset', 503])
  assert.equal(up.retries.attempts, 2)
  assert.equal(up.max_response_header_size, 16 * 1024)
  assert.equal(up.keepalive.idle_timeout, 15_000)
  assert.equal(up.outlier_detection.consecutive_failures, 4)
  assert.equal(up.outlier_detection.base_ejection_time, 30_000)
  assert.deepEqual(up.dns.resolvers, ['10.0.0.53'])
  assert.equal(up.dns.max_ttl, 30_000)
  assert.equal(up.tls?.ca, '/etc/ssl/ca.pem')
  assert.equal(up.tls?.insecure_skip_verify, false)
  assert.equal(c.cache.max_size, 64 * 1024 * 1024)
  assert.equal(l.tls?.ciphers, 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256')
  assert.equal(l.tls?.certificates[0].ocsp_response, '/etc/ssl/api.ocsp')
  assert.deepEqual(l.tls?.hsts, { max_age: 63_072_000_000, include_subdomains: true, preload: false })
  assert.equal(l.http2.max_concurrent_streams, 64)
  assert.equal(l.encoded_slashes, 'keep', 'nginx accepts %2F in paths')
  assert.equal(api.pass_server_header, true)
  assert.deepEqual(api.upgrades, ['websocket'], 'Upgrade $http_upgrade: WebSocket is tunnelled')
  const www = c.routes.find((x) => x.match.host === 'www.example.com')
  assert.deepEqual(www?.upgrades, [], 'no Upgrade header set: nginx does not tunnel')
  assert.deepEqual(r.notes.filter((n) => /X-Real-IP|Upgrade|Connection/.test(n.directive)), [], 'headers Portico sets itself are not noted')
  // Only the api server adds HSTS, but Portico sends it for the whole listener: said.
  assert.deepEqual(r.notes.filter((n) => /Strict-Transport/.test(n.directive)).map((n) => n.reason), ['Portico sends Strict-Transport-Security from every server of this port, not only from the ones that add it'])

  // Comments name the source line of each key.
  const lines = SITE.split('\n')
  const lineOf = (text: string) => lines.findIndex((l) => l.includes(text)) + 1
  assert.match(r.yaml, new RegExp(`response_header: "20s"  # nginx\\.conf:${lineOf('proxy_read_timeout 20s')} proxy_read_timeout 20s`))
  assert.match(r.yaml, new RegExp(`load_balancing: least_request  # nginx\\.conf:${lineOf('random two')} random two least_conn`))
  assert.match(r.yaml, new RegExp(`min_version: TLSv1\\.3  # nginx\\.conf:${lineOf('ssl_protocols')} ssl_protocols TLSv1\\.3`))
  assert.match(r.yaml, /max_request_body_size: "20MiB" {2}# nginx\.conf:5 client_max_body_size 20m/)
})

test('what cannot be converted is listed with file:line and reason; routing omissions make it incomplete', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  include conf.d/*.conf;
}
`,
    'conf.d/app.conf': `upstream sticky {
  ip_hash;
  server 127.0.0.1:8001;
  server unix:/run/app.sock;
  server 127.0.0.1:8002 backup;
}
server {
  listen 80;
  server_name app.example.com;
  location / { proxy_pass http://sticky; }
  location ~ ^/user/(\\d+)$ { proxy_pass http://127.0.0.1:8003; }
  location /old { rewrite ^/old/(.*)$ /new/$1 permanent; }
  location /admin/ { allow 10.0.0.0/8; deny all; proxy_pass http://127.0.0.1:8004; }
  location /php/ { fastcgi_pass 127.0.0.1:9000; }
  location /lua/ { content_by_lua_block { local t = { a = "}" } -- a } in a comment
    ngx.say([[ { ]], t.a, '{') } }
  location /files/ { root /srv; }
  location /hdr/ { proxy_pass http://127.0.0.1:8005; add_header X-Frame-Options DENY; }
  location /dyn/ { proxy_pass http://$http_x_backend; }
  if ($http_user_agent ~ bot) { return 403; }
}
`,
  })
  assert.equal(r.complete, false)
  const file = join(r.dir, 'conf.d/app.conf')
  const at = (line: number, re: RegExp, routing: boolean) => {
    const n = r.notes.find((x) => x.file === file && x.line === line && re.test(`${x.directive}: ${x.reason}`))
    assert.ok(n, `a note at conf.d/app.conf:${line} matching ${re}; notes:\n${r.notes.map((x) => `${x.file}:${x.line}: ${x.directive}: ${x.reason}`).join('\n')}`)
    assert.equal(n.routing, routing, `routing flag of ${n.directive}`)
  }
  at(2, /ip_hash/, true)
  at(11, /regular-expression locations/, true)
  at(12, /rewrite/, true)
  at(13, /^allow .*routes\[\]\.access/, true)
  at(14, /FastCGI/, true)
  at(15, /Lua/, true)
  at(17, /serve files/, true)
  at(18, /add_header .*routes\[\]\.response_headers/, false)
  at(19, /variable address/, true)
  at(20, /conditional/, true)
  // The notes head the file too, and the rest still converts.
  assert.match(r.yaml, /^# INCOMPLETE: /m)
  assert.match(r.yaml, /# {3}conf\.d\/app\.conf:12: rewrite/)
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.deepEqual(c.upstreams.sticky.endpoints, [
    { url: 'http://127.0.0.1:8001', weight: 1, backup: false },
    { url: 'unix:/run/app.sock', weight: 1, backup: false },
    { url: 'http://127.0.0.1:8002', weight: 1, backup: true },
  ])
  assert.ok(c.routes.some((x) => x.match.path_prefix === '/admin/'), 'a location with access rules is converted and the rules are noted')
})

test('a port-80 server that only redirects becomes redirect_to_https; a mixed port stays a proxy and is noted', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  server { listen 80; server_name a.example.com; location / { return 301 https://$host$request_uri; } }
  server { listen 8080; server_name a.example.com; return 308 https://$server_name:8443$request_uri; }
  server { listen 8080; server_name b.example.com; location / { proxy_pass http://127.0.0.1:3000; } }
  server { listen 8443 ssl; server_name a.example.com; ssl_certificate a.pem; ssl_certificate_key a.key; location / { proxy_pass http://127.0.0.1:3000; } }
  server {
    listen 8081;
    location /.well-known/acme-challenge/ { root /var/www/certbot; }
    location / { return 301 https://$host$request_uri; }
  }
}
`,
  })
  assert.ok(r.notes.some((n) => n.routing && n.line === 9 && /serves this location itself on a port that otherwise redirects/.test(n.reason)), 'the ACME location of a redirecting server is noted')
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.equal(c.listeners.find((l) => l.address === '0.0.0.0:80')?.redirect_to_https, true)
  assert.equal(c.listeners.find((l) => l.address === '0.0.0.0:8080')?.redirect_to_https, undefined)
  assert.equal(c.listeners.find((l) => l.address === '0.0.0.0:8081')?.redirect_to_https, true, 'certbot\'s ACME location does not stop the redirect')
  assert.ok(r.notes.some((n) => n.routing && n.line === 4 && /redirects to https but shares its port/.test(n.reason)))
})

test('outlier detection follows nginx: off for a lone server and for fail_timeout=0, max_fails=0 turns it off', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  upstream lone { server 127.0.0.1:8001 max_fails=3; server 127.0.0.1:8009 backup; }
  upstream never { server 127.0.0.1:8002 fail_timeout=0; server 127.0.0.1:8003 fail_timeout=0; }
  upstream off { server 127.0.0.1:8004 max_fails=0; server 127.0.0.1:8005 max_fails=0; }
  upstream pair { server 127.0.0.1:8006 max_fails=2 fail_timeout=3s; server 127.0.0.1:8007 max_fails=2 fail_timeout=3s; }
  server {
    listen 8080;
    location /a/ { proxy_pass http://lone; }
    location /b/ { proxy_pass http://never; }
    location /c/ { proxy_pass http://off; }
    location /d/ { proxy_pass http://pair; }
  }
}
`,
  })
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.equal(c.upstreams.lone.outlier_detection.consecutive_failures, 0)
  assert.equal(c.upstreams.never.outlier_detection.consecutive_failures, 0)
  assert.equal(c.upstreams.off.outlier_detection.consecutive_failures, 0)
  assert.equal(c.upstreams.pair.outlier_detection.consecutive_failures, 2)
  assert.equal(c.upstreams.pair.outlier_detection.base_ejection_time, 3000)
  assert.equal(c.upstreams.pair.outlier_detection.max_ejection_percent, 100)
  assert.equal(c.upstreams.lone.retries.attempts, 2, 'the backup counts as a next server')
})

test('limit_conn by client address and streaming locations (proxy_buffering off)', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  limit_conn_zone $binary_remote_addr zone=per_ip:10m;
  limit_conn_zone $server_name zone=per_server:10m;
  limit_conn per_ip 20;
  server {
    listen 8080;
    limit_conn per_server 1000;
    location / { proxy_pass http://127.0.0.1:3000; }
    location /events/ {
      proxy_pass http://127.0.0.1:3000;
      proxy_buffering off;
      proxy_request_buffering off;
      limit_conn per_ip 5;
    }
  }
}
`,
  })
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.equal(c.limits.max_requests_per_client_ip, 5, 'the smallest limit on the client address')
  assert.match(r.yaml, /max_requests_per_client_ip: 5 {2}# nginx\.conf:14 limit_conn per_ip 5; answered with 429/)
  const events = c.routes.find((x) => x.match.path_prefix === '/events/')
  assert.deepEqual(events?.buffering, { request: false, response: false })
  assert.deepEqual(c.routes.find((x) => x.match.path_prefix === '/')?.buffering, { request: true, response: true })
  const noted = r.notes.map((n) => `${n.line}: ${n.directive}`)
  assert.ok(noted.includes('4: limit_conn_zone $server_name zone=per_server:10m'), noted.join('\n'))
  assert.ok(noted.includes('8: limit_conn per_server 1000'))
  assert.ok(noted.includes('14: limit_conn per_ip 5'), 'applied everywhere: said')
  assert.ok(!noted.some((n) => n.startsWith('3:') || n.startsWith('5:')), 'the per-address zone and its http-level use are converted')
})

test('a catch-all server that refuses unknown names: no route without a host, and no routing note', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  server { listen 8080 default_server; server_name _; return 444; }
  server { listen 8080; server_name app.example.com; location / { proxy_pass http://127.0.0.1:3000; } }
}
`,
  })
  assert.equal(r.complete, true, r.notes.map((n) => n.reason).join('\n'))
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.deepEqual(c.routes.map((x) => x.match.host), ['app.example.com'], 'unknown names get 404 from Portico, as nginx refuses them')
  assert.ok(r.notes.some((n) => n.line === 3 && /404 destination_not_found.*closes the connection/.test(n.reason)))
})

test('portico convert writes the file and exits 0 when complete, 1 when incomplete, 2 when nginx would refuse the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'portico-convert-cli-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const io = () => {
    const o = { out: '', err: '' }
    return {
      o,
      out: { write: (s: string) => { o.out += s; return true } } as unknown as NodeJS.WritableStream,
      err: { write: (s: string) => { o.err += s; return true } } as unknown as NodeJS.WritableStream,
    }
  }
  await writeFile(join(dir, 'ok.conf'), 'events {}\nhttp { server { listen 8080; location / { proxy_pass http://127.0.0.1:3000; } } }\n')
  let s = io()
  assert.equal(await convertCommand({ nginx: join(dir, 'ok.conf'), output: join(dir, 'ok.yaml') }, s.out, s.err), 0, s.o.err)
  assert.match(await readFile(join(dir, 'ok.yaml'), 'utf8'), /address: "0\.0\.0\.0:8080"/)
  assert.match(s.o.err, /everything converted/)

  await writeFile(join(dir, 'part.conf'), 'events {}\nhttp { server { listen 8080; location / { proxy_pass http://127.0.0.1:3000; } location ~ \\.php$ { fastcgi_pass 127.0.0.1:9000; } } }\n')
  s = io()
  assert.equal(await convertCommand({ nginx: join(dir, 'part.conf') }, s.out, s.err), 1)
  assert.match(s.o.out, /^listeners:/m, 'written to standard output')
  assert.match(s.o.err, new RegExp(`${join(dir, 'part.conf').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2: location ~ \\\\\\.php\\$: regular-expression locations`))
  assert.match(s.o.err, /change routing or access/)

  await writeFile(join(dir, 'bad.conf'), 'http { server { listen 8080 }\n')
  s = io()
  assert.equal(await convertCommand({ nginx: join(dir, 'bad.conf') }, s.out, s.err), 2)
  assert.match(s.o.err, /bad\.conf:\d+: /)
  assert.equal(s.o.out, '')
})
