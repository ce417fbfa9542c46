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
    send_timeout 45s;
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
  assert.equal(l.timeouts.send, 45_000, 'nginx send_timeout')
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
  location ~ ^/user/(?>\\d+)$ { proxy_pass http://127.0.0.1:8003; }
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
  at(11, /regular expression not converted: atomic/, true)
  at(12, /rewrite/, true)
  at(14, /FastCGI/, true)
  at(15, /Lua/, true)
  at(17, /serve files/, true)
  at(18, /add_header .*without "always"/, false)
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
  assert.deepEqual(c.routes.find((x) => x.match.path_prefix === '/admin/')?.access, [{ allow: ['10.0.0.0/8'] }, { deny: ['all'] }], 'allow/deny become the route\'s access rules')
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

test('limit_conn per route as nginx inherits it, streaming locations (proxy_buffering off)', async (t) => {
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
      limit_conn_status 429;
    }
  }
}
`,
  })
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.equal(c.limits.max_requests_per_client_ip, undefined, 'a server-level limit_conn replaces the http-level one: no global cap')
  const events = c.routes.find((x) => x.match.path_prefix === '/events/')
  assert.deepEqual(events?.limit_conn, { key: 'client_ip', max: 5 })
  assert.deepEqual(events?.buffering, { request: false, response: false })
  const root = c.routes.find((x) => x.match.path_prefix === '/')
  assert.deepEqual(root?.limit_conn, { key: 'route', max: 1000 }, 'the server-level limit, inherited')
  assert.deepEqual(root?.buffering, { request: true, response: true })
  assert.match(r.yaml, /limit_conn: {2}# nginx\.conf:14 limit_conn per_ip 5/)
  const noted = r.notes.map((n) => `${n.line}: ${n.directive}: ${n.reason}`)
  assert.ok(noted.some((n) => /^8: limit_conn per_server 1000: .*nginx answers 503 \(the default of limit_conn_status\)/.test(n)), noted.join('\n'))
  assert.ok(!noted.some((n) => n.startsWith('14:')), 'limit_conn_status 429: Portico answers the same')
  assert.equal(r.complete, true)
})

test('limit_conn on the client address at http level only is the global per-client cap', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  limit_conn_zone $binary_remote_addr zone=per_ip:10m;
  limit_conn per_ip 20;
  limit_conn_status 429;
  server { listen 8080; location / { proxy_pass http://127.0.0.1:3000; } location /b/ { proxy_pass http://127.0.0.1:3001; } }
}
`,
  })
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.equal(c.limits.max_requests_per_client_ip, 20)
  assert.ok(c.routes.every((x) => x.limit_conn === undefined))
  assert.deepEqual(r.notes, [])
})

test('allow/deny and limit_except become access rules in nginx order; the nearest level with rules wins', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  server {
    listen 8080;
    allow 192.168.1.7/24;
    allow 2001:db8::/32;
    deny all;
    location / { proxy_pass http://127.0.0.1:3000; }
    location /open/ { allow all; proxy_pass http://127.0.0.1:3000; }
    location /api/ {
      proxy_pass http://127.0.0.1:3000;
      limit_except GET { allow 10.0.0.0/8; deny all; }
    }
    location /ro/ {
      proxy_pass http://127.0.0.1:3000;
      limit_except GET POST { deny all; }
    }
  }
}
`,
  })
  assert.equal(r.complete, true, r.notes.map((n) => n.reason).join('\n'))
  const c = parseConfig(r.yaml, 'x.yaml')
  const route = (p: string) => c.routes.find((x) => x.match.path_prefix === p)
  assert.deepEqual(route('/')?.access, [{ allow: ['192.168.1.0/24'] }, { allow: ['2001:db8::/32'] }, { deny: ['all'] }], 'server rules, host bits cleared as nginx does')
  assert.deepEqual(route('/open/')?.access, [{ allow: ['all'] }], 'a location with rules of its own does not inherit the server\'s')
  assert.deepEqual(route('/api/')?.access, [
    { allow: ['192.168.1.0/24'], methods: ['GET', 'HEAD'] }, { allow: ['2001:db8::/32'], methods: ['GET', 'HEAD'] }, { deny: ['all'], methods: ['GET', 'HEAD'] },
    { allow: ['all'], methods: ['GET', 'HEAD'] },
    { allow: ['10.0.0.0/8'] }, { deny: ['all'] },
  ])
  assert.deepEqual(route('/ro/')?.access?.slice(-2), [{ allow: ['all'], methods: ['GET', 'HEAD', 'POST'] }, { deny: ['all'] }])
  assert.match(r.yaml, /- allow: "192\.168\.1\.0\/24" {2}# nginx\.conf:5 allow 192\.168\.1\.7\/24 \(the network of 192\.168\.1\.7\/24\)|# nginx\.conf:5 allow 192\.168\.1\.7\/24 \(the network/)
})

test('limit_req zones become rate limits: rate, burst, nodelay, keys; delays, statuses and shared zones noted', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  limit_req_zone $binary_remote_addr zone=perip:10m rate=10r/s;
  limit_req_zone $http_x_api_key zone=perkey:10m rate=600r/m;
  limit_req_zone $server_name zone=perserver:1m rate=100r/s;
  limit_req_zone $binary_remote_addr$uri zone=odd:1m rate=1r/s;
  limit_req_status 429;
  server {
    listen 8080;
    limit_req zone=perserver burst=50;
    location / { proxy_pass http://127.0.0.1:3000; }
    location /api/ {
      proxy_pass http://127.0.0.1:3000;
      limit_req zone=perip burst=20 nodelay;
      limit_req zone=perkey burst=5 delay=2;
      limit_req_status 503;
    }
    location /odd/ { proxy_pass http://127.0.0.1:3000; limit_req zone=odd; }
  }
}
`,
  })
  const c = parseConfig(r.yaml, 'x.yaml')
  const route = (p: string) => c.routes.find((x) => x.match.path_prefix === p)
  assert.deepEqual(route('/api/')?.rate_limits.map((l) => ({ name: l.name, key: l.key, rate: l.rate, burst: l.burst })), [
    { name: 'perip', key: 'client_ip', rate: '10r/s', burst: 20 },
    { name: 'perkey', key: { header: 'X-Api-Key' }, rate: '600r/m', burst: 5 },
  ])
  assert.deepEqual(route('/')?.rate_limits.map((l) => [l.key, l.rate, l.burst]), [['route', '100r/s', 50]])
  assert.deepEqual(route('/odd/')?.rate_limits, [])
  const noted = r.notes.map((n) => `${n.line}: ${n.reason}`)
  const has = (re: RegExp) => assert.ok(noted.some((n) => re.test(n)), `${re}\n${noted.join('\n')}`)
  has(/^6: key \$binary_remote_addr\$uri is not converted/)
  has(/^10: without nodelay nginx delays the 50 requests/)
  has(/^15: delay=2/)
  has(/^16: .*nginx answers 503/)
  assert.ok(!noted.some((n) => /^7: /.test(n)), 'limit_req_status 429 is what Portico answers')
  assert.equal(r.complete, true)
})

test('a limit_req zone used by several routes is noted: nginx counts it once for all of them', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  limit_req_zone $binary_remote_addr zone=perip:10m rate=5r/s;
  limit_req_status 429;
  server {
    listen 8080;
    limit_req zone=perip burst=10 nodelay;
    location /a/ { proxy_pass http://127.0.0.1:3000; }
    location /b/ { proxy_pass http://127.0.0.1:3000; }
  }
}
`,
  })
  const c = parseConfig(r.yaml, 'x.yaml')
  assert.deepEqual(c.routes.map((x) => x.rate_limits.map((l) => [l.key, l.rate, l.burst])), [[['client_ip', '5r/s', 10]], [['client_ip', '5r/s', 10]]])
  assert.deepEqual(r.notes.map((n) => `${n.line}: ${n.reason}`), ['3: nginx counts one zone across every location that uses it; Portico counts each of the 2 routes that use it apart'])
})

test('header rules: proxy_set_header fields and "" removals, add_header, proxy_hide_header, headers-more', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  add_header X-Frame-Options DENY always;
  server {
    listen 8080;
    proxy_set_header Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Env production;
    proxy_set_header Accept-Encoding "";
    proxy_set_header X-Client $remote_addr;
    location / { proxy_pass http://127.0.0.1:3000; proxy_hide_header X-Powered-By; more_clear_headers X-Runtime; }
    location /own/ {
      proxy_pass http://127.0.0.1:3000;
      add_header Cache-Control "no-store";
      add_header X-Trace $request_id;
      more_set_input_headers 'X-Via-Edge: yes';
    }
  }
}
`,
  })
  const c = parseConfig(r.yaml, 'x.yaml')
  const route = (p: string) => c.routes.find((x) => x.match.path_prefix === p)
  assert.deepEqual(route('/')?.request_headers, { remove: ['Accept-Encoding'], set: { 'X-Env': 'production' }, add: {} })
  assert.deepEqual(route('/')?.response_headers, { remove: ['X-Powered-By', 'X-Runtime'], set: {}, add: { 'X-Frame-Options': 'DENY' } })
  assert.deepEqual(route('/own/')?.response_headers, { remove: [], set: {}, add: { 'Cache-Control': 'no-store' } }, 'add_header of a location replaces the inherited ones')
  assert.deepEqual(route('/own/')?.request_headers?.set, { 'X-Env': 'production', 'X-Via-Edge': 'yes' })
  const noted = r.notes.map((n) => `${n.line}: ${n.reason}`)
  const has = (re: RegExp) => assert.ok(noted.some((n) => re.test(n)), `${re}\n${noted.join('\n')}`)
  has(/^10: not converted: the value has variables/)
  has(/^14: without "always"/)
  has(/^15: not converted: the value has variables/)
  assert.ok(!noted.some((n) => /^(3|7|8|9): /.test(n)), noted.join('\n'))
  assert.match(r.yaml, /X-Frame-Options: DENY {2}# nginx\.conf:3 add_header X-Frame-Options DENY always \(Portico adds it to upstream responses of every status/)
})

test('real IP: set_real_ip_from and real_ip_header X-Forwarded-For become trusted_proxies; X-Real-IP is noted', async (t) => {
  let r = await convert(t, {
    'nginx.conf': `events {}
http {
  set_real_ip_from 10.0.0.0/8;
  set_real_ip_from 192.0.2.1;
  real_ip_header X-Forwarded-For;
  real_ip_recursive on;
  server { listen 8080; location / { proxy_pass http://127.0.0.1:3000; deny 198.51.100.0/24; } }
}
`,
  })
  let c = parseConfig(r.yaml, 'x.yaml')
  assert.deepEqual(c.trusted_proxies, ['10.0.0.0/8', '192.0.2.1'])
  assert.equal(c.real_ip_header, 'x-forwarded-for')
  assert.deepEqual(r.notes, [])
  r = await convert(t, {
    'nginx.conf': `events {}
http {
  set_real_ip_from 10.0.0.0/8;
  server { listen 8080; location / { proxy_pass http://127.0.0.1:3000; deny 198.51.100.0/24; } }
}
`,
  })
  c = parseConfig(r.yaml, 'x.yaml')
  assert.deepEqual(c.trusted_proxies, [])
  assert.ok(r.notes.some((n) => n.line === 3 && n.routing && /X-Real-IP \(the default of real_ip_header\)/.test(n.reason)), 'with access rules, reading another field changes who is let in')
})

test('regex locations become path_regex routes in file order; ^~ prefixes are excluded as nginx skips regexes for them', async (t) => {
  const r = await convert(t, {
    'nginx.conf': `events {}
http {
  server {
    listen 8080;
    location / { proxy_pass http://127.0.0.1:3000; }
    location ^~ /static/ { proxy_pass http://127.0.0.1:3001; }
    location /static/dyn/ { proxy_pass http://127.0.0.1:3002; }
    location ~* \\.(png|jpg)$ { proxy_pass http://127.0.0.1:3003; }
    location ~ ^/user/(\\d+)$ { proxy_pass http://127.0.0.1:3004; }
    location /app/ { proxy_pass http://127.0.0.1:3005; location ~ \\.php$ { proxy_pass http://127.0.0.1:3006; } }
  }
}
`,
  })
  const c = parseConfig(r.yaml, 'x.yaml')
  const regexes = c.routes.filter((x) => x.match.path_regex !== undefined).map((x) => x.match.path_regex as string)
  assert.equal(regexes.length, 2)
  const img = new RegExp(regexes[0])
  assert.ok(img.test('/a/b.PNG') && img.test('/static/dyn/x.png'), 'case-insensitive; a longer plain prefix under ^~ is checked')
  assert.ok(!img.test('/static/x.png') && !img.test('/a/b.gif'), 'the ^~ prefix is not')
  assert.ok(new RegExp(regexes[1]).test('/user/42') && !new RegExp(regexes[1]).test('/user/x'))
  assert.ok(r.notes.some((n) => n.line === 10 && n.routing && /nested in another location/.test(n.reason)))
  assert.match(r.yaml, /path_regex: .* {2}# nginx\.conf:8 location ~\* \\\.\(png\|jpg\)\$ \(not under the \^~ prefix \/static\//)
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

  await writeFile(join(dir, 'part.conf'), 'events {}\nhttp { server { listen 8080; location / { proxy_pass http://127.0.0.1:3000; } location ~ \\.(?>php)$ { fastcgi_pass 127.0.0.1:9000; } } }\n')
  s = io()
  assert.equal(await convertCommand({ nginx: join(dir, 'part.conf') }, s.out, s.err), 1)
  assert.match(s.o.out, /^listeners:/m, 'written to standard output')
  assert.match(s.o.err, new RegExp(`${join(dir, 'part.conf').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2: location ~ \\\\\\.\\(\\?>php\\)\\$: regular expression not converted: atomic`))
  assert.match(s.o.err, /change routing or access/)

  await writeFile(join(dir, 'bad.conf'), 'http { server { listen 8080 }\n')
  s = io()
  assert.equal(await convertCommand({ nginx: join(dir, 'bad.conf') }, s.out, s.err), 2)
  assert.match(s.o.err, /bad\.conf:\d+: /)
  assert.equal(s.o.out, '')
})
