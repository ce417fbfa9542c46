/**
 * Differential test of `portico convert --nginx`: real nginx (Debian package) and Portico
 * started from the converted file stand in front of the same loopback backends; the same
 * requests go to both, and each must reach the same backend with the same path and Host,
 * get the same status class, and over TLS the same certificate (SNI) and ALPN protocol.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { convertCommand } from '../../src/cli/convert.ts'
import { checkCommand } from '../../src/cli/check.ts'
import { loadConfigFile } from '../../src/config/load.ts'
import { Gateway } from '../../src/server/gateway.ts'
import { memoryAccessLog } from '../../src/observe/access-log.ts'
import { makeCA, makeCertificate, type KeyPair } from '../../src/lab/index.ts'
import { freePort, waitListening } from '../helpers/ports.ts'

const NGINX = '/usr/sbin/nginx'
const skip = existsSync(NGINX) ? false : `nginx not installed at ${NGINX} (apt-get install nginx-light)`

/** A loopback backend that answers with its name and what it received. */
interface Backend { name: string; port: number; server: http.Server }

async function startBackend(name: string, socketPath?: string): Promise<Backend> {
  const server = http.createServer((req, res) => {
    let bytes = 0
    req.on('data', (c: Buffer) => { bytes += c.length })
    req.on('end', () => {
      const body = JSON.stringify({ backend: name, url: req.url, host: req.headers.host ?? null, bytes, headers: req.headers })
      const delay = /\/slow(\/|$)/.test(req.url ?? '') ? 1500 : 0
      const t = setTimeout(() => {
        if (res.destroyed) return
        // Fields a proxy may be told to hide from clients.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-powered-by': 'backend', 'x-runtime': '12' })
        res.end(body)
      }, delay)
      res.once('close', () => clearTimeout(t))
    })
  })
  server.keepAliveTimeout = 2000
  if (socketPath !== undefined) {
    await new Promise<void>((r) => server.listen(socketPath, r))
    // nginx workers started by root run as nobody: they must be able to connect.
    await chmod(socketPath, 0o777)
    return { name, port: 0, server }
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { name, port: (server.address() as net.AddressInfo).port, server }
}

/** Ports, backends and certificate files a configuration template is filled with. */
interface Env {
  /** `127.0.0.1:port` of backend i. */
  b: (i: number) => string
  /** A port where nothing listens. */
  dead: string
  /** nginx port of a named listener. */
  port: (name: string) => number
  /** Certificate and key file of a named certificate. */
  cert: (name: string) => { cert: string; key: string }
  /** Socket path of unix backend i (named `u<i>`). */
  sock: (i: number) => string
}

/** One request of a case. */
interface Req {
  /** Named listener to send to. */
  to: string
  host: string
  path: string
  method?: string
  /** Bytes of request body to send. */
  body?: number
  /** Connect with TLS and this SNI name. */
  sni?: string
  /** Send this many times; backends are compared as a multiset (round robin) or a set (least_conn, random). */
  repeat?: number
  compare?: 'each' | 'multiset' | 'set'
  /** Status class nginx must answer with (so that two equal failures cannot pass for agreement). Default 200. */
  expect?: 200 | 300 | 400 | 500
  /** Loopback address the client connects from (access rules by address). Default 127.0.0.1. */
  from?: string
  /** Request header fields to send besides Host. */
  headers?: Record<string, string>
  /**
   * A rate-limited burst: the `repeat` requests, sent one after the other, must be admitted
   * `admitted` times by both; nginx refuses the rest with `status`, Portico with 429
   * (equal when `status` is 429).
   */
  limited?: { admitted: number; status: number }
}

interface Case {
  name: string
  /** Backends to start, by index. */
  backends: number
  /** Backends on unix sockets to start, by index. */
  unix?: number
  /** Named listener ports; names ending in `s` are TLS. */
  listeners: string[]
  certs?: Record<string, string[]>
  /** Files of the configuration: `nginx.conf` and any included ones. */
  files: (e: Env) => Record<string, string>
  /** Whether every route is converted (exit 0) or some are listed as not converted (exit 1). */
  complete: boolean
  /** A note the conversion must print, when incomplete. */
  noted?: RegExp
  /** Request fields the backends saw that must be equal (lower case). Default: none compared. */
  seen?: string[]
  /** Response fields the client got that must be equal (lower case). Default: none compared. */
  shown?: string[]
  requests: Req[]
}

const PRELUDE = (dir: string) => `worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 256; }
`
const TEMPS = (dir: string) => ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `  ${k}_temp_path ${join(dir, k)};`).join('\n')

const CASES: Case[] = [
  {
    name: 'one site: an upstream pool, an API prefix stripped, Host kept',
    backends: 3, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  include mime.types;
  sendfile on;
  keepalive_timeout 65;
  upstream app_servers {
    server ${e.b(0)};
    server ${e.b(1)};
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${e.port('web')};
    server_name shop.example.test;
    location / {
      proxy_pass http://app_servers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
    location /api/ {
      proxy_pass http://${e.b(2)}/;
      proxy_set_header Host $host;
    }
  }
}
`,
      'mime.types': 'types { text/html html; application/json json; }\n',
    }),
    requests: [
      { to: 'web', host: 'shop.example.test', path: '/', repeat: 4, compare: 'multiset' },
      { to: 'web', host: 'shop.example.test', path: '/cart?id=7', repeat: 2, compare: 'multiset' },
      { to: 'web', host: 'shop.example.test', path: '/api/users/1?full=1' },
      { to: 'web', host: 'shop.example.test', path: '/api/' },
      { to: 'web', host: 'other.example.test', path: '/api/x' },
    ],
  },
  {
    name: 'virtual hosts: exact, wildcard and default servers from conf.d/*.conf',
    backends: 4, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  proxy_set_header Host $host;
  include conf.d/*.conf;
}
`,
      'conf.d/00-default.conf': `server {
  listen 127.0.0.1:${e.port('web')} default_server;
  server_name _;
  location / { proxy_pass http://${e.b(0)}; }
}
`,
      'conf.d/10-blog.conf': `server {
  listen 127.0.0.1:${e.port('web')};
  server_name blog.example.test www.blog.example.test;
  location / { proxy_pass http://${e.b(1)}; }
  location /admin/ { proxy_pass http://${e.b(2)}; }
}
`,
      'conf.d/20-tenants.conf': `server {
  listen 127.0.0.1:${e.port('web')};
  server_name *.tenants.example.test;
  location / { proxy_pass http://${e.b(3)}; }
}
`,
    }),
    requests: [
      { to: 'web', host: 'blog.example.test', path: '/post/1' },
      { to: 'web', host: 'www.blog.example.test', path: '/' },
      { to: 'web', host: 'blog.example.test', path: '/admin/settings' },
      { to: 'web', host: 'acme.tenants.example.test', path: '/dashboard' },
      { to: 'web', host: 'deep.acme.tenants.example.test', path: '/' },
      { to: 'web', host: 'unknown.example.test', path: '/anything' },
      { to: 'web', host: 'tenants.example.test', path: '/' },
    ],
  },
  {
    name: 'a catch-all server that refuses unknown names',
    backends: 1, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  server {
    listen 127.0.0.1:${e.port('web')} default_server;
    server_name _;
    return 404;
  }
  server {
    listen 127.0.0.1:${e.port('web')};
    server_name known.example.test;
    location / { proxy_pass http://${e.b(0)}; proxy_set_header Host $host; }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'known.example.test', path: '/x' },
      { to: 'web', host: 'scanner.example.test', path: '/wp-login.php', expect: 400 },
      { to: 'web', host: '127.0.0.1', path: '/', expect: 400 },
    ],
  },
  {
    name: 'weights, backups and a down server',
    backends: 4, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  upstream api {
    server ${e.b(0)} weight=3 max_fails=2 fail_timeout=5s;
    server ${e.b(1)} max_fails=2 fail_timeout=5s;
    server ${e.b(2)} backup;
    server ${e.b(3)} down;
  }
  upstream failover {
    server ${e.dead};
    server ${e.b(2)} backup;
  }
  server {
    listen 127.0.0.1:${e.port('web')};
    server_name api.example.test;
    location / {
      proxy_pass http://api;
      proxy_set_header Host $host;
    }
    location /failover/ {
      proxy_pass http://failover;
      proxy_set_header Host $host;
    }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'api.example.test', path: '/v1/items', repeat: 8, compare: 'multiset' },
      { to: 'web', host: 'api.example.test', path: '/failover/a', repeat: 3, compare: 'multiset' },
    ],
  },
  {
    name: 'path rewrites: prefix replaced, exact locations, default Host $proxy_host',
    backends: 3, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  upstream legacy { server ${e.b(0)}; }
  upstream current { server ${e.b(1)}; }
  server {
    listen 127.0.0.1:${e.port('web')};
    server_name app.example.test;
    location /old/ { proxy_pass http://legacy/new/; }
    location = /status { proxy_pass http://current/healthz; }
    location = /exact/ { proxy_pass http://current; }
    location / { proxy_pass http://current; }
    location /docs { proxy_pass http://${e.b(2)}; }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'app.example.test', path: '/old/a/b?q=1' },
      { to: 'web', host: 'app.example.test', path: '/old/' },
      { to: 'web', host: 'app.example.test', path: '/status' },
      { to: 'web', host: 'app.example.test', path: '/status?verbose=1' },
      { to: 'web', host: 'app.example.test', path: '/status/more' },
      { to: 'web', host: 'app.example.test', path: '/exact/' },
      { to: 'web', host: 'app.example.test', path: '/exact/deeper' },
      { to: 'web', host: 'app.example.test', path: '/docs/intro' },
      { to: 'web', host: 'app.example.test', path: '/' },
    ],
  },
  {
    name: 'TLS with SNI, HTTP/2 by ALPN, HSTS, and the port-80 redirect',
    backends: 2, listeners: ['http', 'https'], complete: true,
    certs: { shop: ['shop.example.test'], admin: ['admin.example.test'] },
    files: (e) => ({
      'nginx.conf': `http {
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:1m;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256;
  server {
    listen 127.0.0.1:${e.port('http')};
    server_name shop.example.test admin.example.test;
    return 301 https://$host:${e.port('https')}$request_uri;
  }
  server {
    listen 127.0.0.1:${e.port('https')} ssl http2;
    server_name shop.example.test;
    ssl_certificate ${e.cert('shop').cert};
    ssl_certificate_key ${e.cert('shop').key};
    add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
    location / { proxy_pass http://${e.b(0)}; proxy_set_header Host $host; }
  }
  server {
    listen 127.0.0.1:${e.port('https')} ssl;
    server_name admin.example.test;
    ssl_certificate ${e.cert('admin').cert};
    ssl_certificate_key ${e.cert('admin').key};
    add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
    location / { proxy_pass http://${e.b(1)}; proxy_set_header Host $host; }
  }
}
`,
    }),
    requests: [
      { to: 'http', host: 'shop.example.test', path: '/checkout?step=2', expect: 300 },
      { to: 'https', sni: 'shop.example.test', host: 'shop.example.test', path: '/checkout?step=2' },
      { to: 'https', sni: 'admin.example.test', host: 'admin.example.test', path: '/users' },
      { to: 'https', sni: 'unknown.example.test', host: 'unknown.example.test', path: '/' },
    ],
  },
  {
    name: 'timeouts: first byte, a refused endpoint, a retry to the next server',
    backends: 2, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  proxy_connect_timeout 2s;
  proxy_read_timeout 10s;
  upstream flaky {
    server ${e.dead};
    server ${e.b(1)};
  }
  server {
    listen 127.0.0.1:${e.port('web')};
    location /reports/ {
      proxy_pass http://${e.b(0)};
      proxy_read_timeout 300ms;
    }
    location /patient/ {
      proxy_pass http://${e.b(0)};
    }
    location /down/ { proxy_pass http://${e.dead}; }
    location /flaky/ {
      proxy_pass http://flaky;
      proxy_next_upstream error timeout;
    }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'reports.example.test', path: '/reports/slow', expect: 500 },
      { to: 'web', host: 'reports.example.test', path: '/reports/fast' },
      { to: 'web', host: 'reports.example.test', path: '/patient/slow' },
      { to: 'web', host: 'reports.example.test', path: '/down/x', expect: 500 },
      { to: 'web', host: 'reports.example.test', path: '/flaky/a' },
      { to: 'web', host: 'reports.example.test', path: '/flaky/b' },
      { to: 'web', host: 'reports.example.test', path: '/flaky/c' },
    ],
  },
  {
    name: 'body limits: per server and the nginx default of 1m',
    backends: 2, listeners: ['small', 'default'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  server {
    listen 127.0.0.1:${e.port('small')};
    client_max_body_size 4k;
    location /upload { proxy_pass http://${e.b(0)}; }
  }
  server {
    listen 127.0.0.1:${e.port('default')};
    location / { proxy_pass http://${e.b(1)}; }
  }
}
`,
    }),
    requests: [
      { to: 'small', host: 'files.example.test', path: '/upload', method: 'POST', body: 1024 },
      { to: 'small', host: 'files.example.test', path: '/upload', method: 'POST', body: 16 * 1024, expect: 400 },
      { to: 'default', host: 'files.example.test', path: '/any', method: 'POST', body: 512 * 1024 },
      { to: 'default', host: 'files.example.test', path: '/any', method: 'POST', body: 1024 * 1024 + 1, expect: 400 },
    ],
  },
  {
    name: 'inheritance and variables: set, http-level settings, nested locations',
    backends: 3, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  proxy_set_header Host $host;
  proxy_read_timeout 5s;
  include upstreams.conf;
  server {
    listen 127.0.0.1:${e.port('web')};
    server_name portal.example.test;
    set $static_backend ${e.b(2)};
    location /app/ {
      proxy_pass http://portal;
      location /app/reports/ {
        proxy_pass http://reports;
        proxy_set_header Host reports.internal;
      }
    }
    location /assets/ { proxy_pass http://$static_backend; }
  }
}
`,
      'upstreams.conf': `upstream portal { server ${e.b(0)}; }
upstream reports { server ${e.b(1)}; }
`,
    }),
    requests: [
      { to: 'web', host: 'portal.example.test', path: '/app/home' },
      { to: 'web', host: 'portal.example.test', path: '/app/reports/q3' },
      { to: 'web', host: 'portal.example.test', path: '/assets/logo.png' },
      { to: 'web', host: 'portal.example.test', path: '/nothing', expect: 400 },
    ],
  },
  {
    name: 'unix sockets: an upstream of socket servers and a direct proxy_pass with a URI',
    backends: 0, unix: 2, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  upstream gunicorn {
    server unix:${e.sock(0)} fail_timeout=0;
  }
  server {
    listen 127.0.0.1:${e.port('web')};
    server_name py.example.test;
    location / {
      proxy_set_header Host $http_host;
      proxy_pass http://gunicorn;
    }
    location /socket-api/ {
      proxy_pass http://unix:${e.sock(1)}:/api/;
    }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'py.example.test', path: '/accounts/login?next=/' },
      { to: 'web', host: 'py.example.test', path: '/socket-api/v1/ping' },
    ],
  },
  {
    name: 'balancing: least_conn and random pools, keepalive',
    backends: 4, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  upstream fewest {
    least_conn;
    server ${e.b(0)};
    server ${e.b(1)};
    keepalive 8;
    keepalive_timeout 20s;
  }
  upstream spread {
    random;
    server ${e.b(2)};
    server ${e.b(3)};
  }
  server {
    listen 127.0.0.1:${e.port('web')};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    location /a/ { proxy_pass http://fewest; }
    location /b/ { proxy_pass http://spread; }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'lb.example.test', path: '/a/x', repeat: 6, compare: 'set' },
      { to: 'web', host: 'lb.example.test', path: '/b/y', repeat: 8, compare: 'set' },
    ],
  },
  {
    name: 'access rules: allow/deny by server and location, CIDRs, limit_except, the real IP behind a trusted proxy',
    backends: 2, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  set_real_ip_from 127.0.0.5;
  real_ip_header X-Forwarded-For;
  real_ip_recursive on;
  server {
    listen 127.0.0.1:${e.port('web')};
    proxy_set_header Host $host;
    allow 127.0.0.2;
    allow 127.0.0.17/30;
    deny all;
    location / { proxy_pass http://${e.b(0)}; }
    location /open/ { allow all; proxy_pass http://${e.b(0)}; }
    location /admin/ { allow 127.0.0.3; deny all; proxy_pass http://${e.b(1)}; }
    location /ro/ {
      proxy_pass http://${e.b(1)};
      limit_except GET { allow 127.0.0.4; deny all; }
    }
    location /behind/ {
      allow 203.0.113.0/24;
      deny all;
      proxy_pass http://${e.b(1)};
    }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'acl.example.test', path: '/', from: '127.0.0.1', expect: 400 },
      { to: 'web', host: 'acl.example.test', path: '/', from: '127.0.0.2' },
      { to: 'web', host: 'acl.example.test', path: '/x', from: '127.0.0.18' },
      { to: 'web', host: 'acl.example.test', path: '/x', from: '127.0.0.20', expect: 400 },
      { to: 'web', host: 'acl.example.test', path: '/open/a', from: '127.0.0.3' },
      { to: 'web', host: 'acl.example.test', path: '/admin/a', from: '127.0.0.2', expect: 400 },
      { to: 'web', host: 'acl.example.test', path: '/admin/a', from: '127.0.0.3' },
      { to: 'web', host: 'acl.example.test', path: '/ro/a', from: '127.0.0.2' },
      { to: 'web', host: 'acl.example.test', path: '/ro/a', method: 'HEAD', from: '127.0.0.2' },
      { to: 'web', host: 'acl.example.test', path: '/ro/a', from: '127.0.0.4', expect: 400 },
      { to: 'web', host: 'acl.example.test', path: '/ro/a', method: 'POST', from: '127.0.0.2', expect: 400 },
      { to: 'web', host: 'acl.example.test', path: '/ro/a', method: 'DELETE', from: '127.0.0.4' },
      { to: 'web', host: 'acl.example.test', path: '/behind/a', from: '127.0.0.5', headers: { 'x-forwarded-for': '203.0.113.9' } },
      { to: 'web', host: 'acl.example.test', path: '/behind/a', from: '127.0.0.5', headers: { 'x-forwarded-for': '203.0.113.9, 198.51.100.1' }, expect: 400 },
      { to: 'web', host: 'acl.example.test', path: '/behind/a', from: '127.0.0.1', headers: { 'x-forwarded-for': '203.0.113.9' }, expect: 400 },
    ],
  },
  {
    name: 'rate limits: limit_req bursts by client address and by API key, nginx\'s 503 and limit_req_status 429',
    backends: 1, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  limit_req_zone $binary_remote_addr zone=perip:1m rate=1r/m;
  limit_req_zone $http_x_api_key zone=perkey:1m rate=1r/m;
  server {
    listen 127.0.0.1:${e.port('web')};
    proxy_set_header Host $host;
    location / { proxy_pass http://${e.b(0)}; }
    location /limited/ {
      limit_req zone=perip burst=3 nodelay;
      proxy_pass http://${e.b(0)};
    }
    location /keyed/ {
      limit_req zone=perkey burst=1 nodelay;
      limit_req_status 429;
      proxy_pass http://${e.b(0)};
    }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'rl.example.test', path: '/limited/a', repeat: 7, limited: { admitted: 4, status: 503 } },
      { to: 'web', host: 'rl.example.test', path: '/limited/a', from: '127.0.0.2', repeat: 2 },
      { to: 'web', host: 'rl.example.test', path: '/keyed/a', headers: { 'x-api-key': 'k1' }, repeat: 4, limited: { admitted: 2, status: 429 } },
      { to: 'web', host: 'rl.example.test', path: '/keyed/a', headers: { 'x-api-key': 'k2' }, repeat: 2 },
      { to: 'web', host: 'rl.example.test', path: '/keyed/a', repeat: 3 },
      { to: 'web', host: 'rl.example.test', path: '/other', repeat: 3 },
    ],
  },
  {
    name: 'header rules: proxy_set_header fields and removals, add_header (always or not), proxy_hide_header, inheritance',
    backends: 2, listeners: ['web'], complete: true,
    seen: ['x-env', 'accept-encoding', 'x-tenant', 'x-debug'],
    shown: ['x-frame-options', 'cache-control', 'x-powered-by', 'x-runtime', 'x-served-by'],
    files: (e) => ({
      'nginx.conf': `http {
  add_header X-Frame-Options DENY always;
  add_header X-Served-By edge-1;
  server {
    listen 127.0.0.1:${e.port('web')};
    proxy_set_header Host $host;
    proxy_set_header X-Env production;
    proxy_set_header Accept-Encoding "";
    proxy_hide_header X-Powered-By;
    location / { proxy_pass http://${e.b(0)}; }
    location /api/ {
      proxy_pass http://${e.b(1)};
      proxy_set_header Host $host;
      proxy_set_header X-Tenant blue;
      add_header Cache-Control "no-store" always;
      proxy_hide_header X-Runtime;
    }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 'hdr.example.test', path: '/page', headers: { 'x-env': 'spoofed', 'accept-encoding': 'gzip', 'x-debug': '1' } },
      { to: 'web', host: 'hdr.example.test', path: '/api/v1', headers: { 'x-env': 'spoofed', 'accept-encoding': 'gzip', 'x-tenant': 'red' } },
    ],
  },
  {
    name: 'regular-expression locations: ~ and ~* in file order, exact and ^~ prefixes before them, plain prefixes after',
    backends: 6, listeners: ['web'], complete: true,
    files: (e) => ({
      'nginx.conf': `http {
  server {
    listen 127.0.0.1:${e.port('web')};
    proxy_set_header Host $host;
    location / { proxy_pass http://${e.b(0)}; }
    location ^~ /static/ { proxy_pass http://${e.b(1)}; }
    location /static/dyn/ { proxy_pass http://${e.b(1)}; }
    location = /logo.png { proxy_pass http://${e.b(2)}; }
    location ~* \\.(png|jpe?g)$ { proxy_pass http://${e.b(3)}; }
    location ~ ^/user/([0-9]+)$ { proxy_pass http://${e.b(4)}; }
    location ~ ^/user/ { proxy_pass http://${e.b(5)}; }
    location /user/1/ { proxy_pass http://${e.b(0)}; }
  }
}
`,
    }),
    requests: [
      { to: 'web', host: 're.example.test', path: '/img/a.PNG' },
      { to: 'web', host: 're.example.test', path: '/img/b.jpeg?size=2' },
      { to: 'web', host: 're.example.test', path: '/static/c.png' },
      { to: 'web', host: 're.example.test', path: '/static/dyn/d.png' },
      { to: 'web', host: 're.example.test', path: '/logo.png' },
      { to: 'web', host: 're.example.test', path: '/user/42' },
      { to: 'web', host: 're.example.test', path: '/user/1/profile' },
      { to: 'web', host: 're.example.test', path: '/user/abc' },
      { to: 'web', host: 're.example.test', path: '/users' },
    ],
  },
]

/** What one request got. */
interface Outcome {
  status: number
  backend?: string
  url?: string
  host?: string | null
  location?: string
  /** Strict-Transport-Security, lower-cased, spaces removed. */
  sts?: string
  cert?: string
  alpn?: string | false | null
  error?: string
  /** The {@link Case.seen} request fields the backend got. */
  seen?: Record<string, string | null>
  /** The {@link Case.shown} response fields the client got. */
  shown?: Record<string, string | null>
}

function request(port: number, r: Req, c: Case): Promise<Outcome> {
  return new Promise((resolve) => {
    const body = r.body ? Buffer.alloc(r.body, 'b') : null
    const opts: https.RequestOptions = {
      host: '127.0.0.1', port, path: r.path, method: r.method ?? 'GET', agent: false, timeout: 5000, localAddress: r.from ?? '127.0.0.1',
      headers: { host: r.host, ...r.headers, ...(body ? { 'content-length': body.length, 'content-type': 'application/octet-stream' } : {}) },
      ...(r.sni ? { servername: r.sni, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] } : {}),
    }
    let done = false
    const finish = (o: Outcome) => { if (!done) { done = true; resolve(o) } }
    const req = (r.sni ? https : http).request(opts, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', () => {})
      res.on('end', () => {
        const o: Outcome = { status: res.statusCode ?? 0 }
        if (res.headers.location) o.location = res.headers.location
        const sts = res.headers['strict-transport-security']
        if (typeof sts === 'string') o.sts = sts.toLowerCase().replace(/\s+/g, '')
        if (c.shown) o.shown = Object.fromEntries(c.shown.map((n) => [n, [res.headers[n] ?? null].flat().join(', ') || null]))
        // A HEAD response has the backend's fields but no body to read them from.
        if ((res.headers['content-type'] ?? '').includes('application/json') && o.status === 200 && chunks.length > 0) {
          const j = JSON.parse(Buffer.concat(chunks).toString()) as { backend: string; url: string; host: string | null; headers: Record<string, string> }
          Object.assign(o, { backend: j.backend, url: j.url, host: j.host })
          if (c.seen) o.seen = Object.fromEntries(c.seen.map((n) => [n, j.headers[n] ?? null]))
        }
        finish(o)
      })
    })
    req.on('timeout', () => req.destroy(new Error('client timeout')))
    req.on('error', (e) => finish({ status: 0, error: (e as Error).message }))
    // A server may answer 413 and close before the whole body is written: the answer counts.
    if (body) req.end(body)
    else req.end()
  })
}

/** The certificate CN and ALPN protocol a TLS client offering h2 and http/1.1 gets. */
function tlsProbe(port: number, sni: string): Promise<{ cert: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: sni, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const cert = s.getPeerCertificate()
      resolve({ cert: String(cert.subject?.CN ?? ''), alpn: s.alpnProtocol })
      s.destroy()
    })
    s.once('error', reject)
  })
}

/** Makes an outcome comparable across the two proxies: ports become listener names. */
function normalise(o: Outcome, ports: Map<number, string>): Outcome {
  const out = { ...o, status: Math.floor(o.status / 100) * 100 }
  if (out.location) out.location = out.location.replace(/:(\d+)(?=\/)/, (_, p: string) => `:${ports.get(Number(p)) ?? p}`)
  if (out.error) out.error = 'error'
  return out
}

for (const c of CASES) {
  test(`nginx and converted Portico agree: ${c.name}`, { skip, timeout: 60_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'portico-convert-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const backends = await Promise.all(Array.from({ length: c.backends }, (_, i) => startBackend(`b${i}`)))
    t.after(() => Promise.all(backends.map((b) => new Promise<void>((r) => { b.server.close(() => r()); b.server.closeAllConnections() }))))
    await chmod(dir, 0o755)
    const sockets = Array.from({ length: c.unix ?? 0 }, (_, i) => join(dir, `u${i}.sock`))
    const unixBackends = await Promise.all(sockets.map((path, i) => startBackend(`u${i}`, path)))
    t.after(() => Promise.all(unixBackends.map((b) => new Promise<void>((r) => { b.server.close(() => r()); b.server.closeAllConnections() }))))
    const dead = await freePort()
    const nginxPorts = new Map<string, number>()
    const porticoPorts = new Map<string, number>()
    for (const l of c.listeners) {
      nginxPorts.set(l, await freePort())
      porticoPorts.set(l, await freePort())
    }
    const certFiles: Record<string, { cert: string; key: string }> = {}
    if (c.certs) {
      const ca: KeyPair = makeCA()
      for (const [name, names] of Object.entries(c.certs)) {
        const kp = makeCertificate({ commonName: names[0], altNames: names, issuer: ca })
        certFiles[name] = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
        await writeFile(certFiles[name].cert, kp.cert)
        await writeFile(certFiles[name].key, kp.key)
      }
    }
    const env: Env = {
      b: (i) => `127.0.0.1:${backends[i].port}`,
      dead: `127.0.0.1:${dead}`,
      port: (name) => nginxPorts.get(name) as number,
      cert: (name) => certFiles[name],
      sock: (i) => sockets[i],
    }
    const files = c.files(env)
    for (const [name, text] of Object.entries(files)) {
      await mkdir(join(dir, name, '..'), { recursive: true })
      const full = name === 'nginx.conf' ? `${PRELUDE(dir)}${text.replace(/^http \{\n/, `http {\n  access_log off;\n${TEMPS(dir)}\n`)}` : text
      await writeFile(join(dir, name), full)
    }
    const conf = join(dir, 'nginx.conf')
    // nginx writes request bodies over 16k to its temp path, which it does not create.
    // Workers of an nginx started by root run as nobody: they must be able to write there.
    await chmod(dir, 0o755)
    for (const k of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
      await mkdir(join(dir, k), { recursive: true })
      await chmod(join(dir, k), 0o777)
    }

    // Convert with the command itself, and check the file as `portico check` does.
    const out = join(dir, 'portico.yaml')
    let stderr = ''
    const sink = { write: (s: string) => { stderr += s; return true } } as unknown as NodeJS.WritableStream
    const code = await convertCommand({ nginx: conf, output: out }, sink, sink)
    assert.equal(code, c.complete ? 0 : 1, `convert exit code; stderr:\n${stderr}`)
    if (c.noted) assert.match(stderr, c.noted)
    let checkOut = ''
    assert.equal(await checkCommand(out, { write: (s: string) => { checkOut += s; return true } } as unknown as NodeJS.WritableStream, sink), 0, `portico check: ${stderr}`)
    assert.match(checkOut, /ok/)

    // The converted file, with Portico's own listener ports (both proxies run side by side).
    let yaml = await readFile(out, 'utf8')
    for (const [name, p] of nginxPorts) yaml = yaml.replaceAll(`127.0.0.1:${p}"`, `127.0.0.1:${porticoPorts.get(name)}"`).replaceAll(`redirect_to_https: ${p}`, `redirect_to_https: ${porticoPorts.get(name)}`)
    const portico = join(dir, 'portico-ports.yaml')
    await writeFile(portico, yaml)
    const gw = new Gateway(await loadConfigFile(portico), { accessLog: memoryAccessLog() })
    await gw.start()
    t.after(() => gw.stop(0))

    const nginx: ChildProcess = spawn(NGINX, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let nginxErr = ''
    nginx.stderr?.on('data', (d) => (nginxErr += d))
    t.after(async () => {
      if (nginx.exitCode === null) {
        nginx.kill('SIGTERM')
        await new Promise((r) => nginx.once('exit', r))
      }
    })
    for (const p of nginxPorts.values()) await waitListening(p, Date.now() + 10_000, () => nginxErr)

    const names = new Map<number, string>()
    for (const [name, p] of nginxPorts) names.set(p, name)
    for (const [name, p] of porticoPorts) names.set(p, name)
    let sent = 0
    let limitedSeen = 0
    for (const r of c.requests) {
      const n = r.repeat ?? 1
      const got: Record<'nginx' | 'portico', Outcome[]> = { nginx: [], portico: [] }
      const raws: Record<'nginx' | 'portico', number[]> = { nginx: [], portico: [] }
      for (const [who, ports] of [['nginx', nginxPorts], ['portico', porticoPorts]] as const) {
        const port = ports.get(r.to) as number
        for (let i = 0; i < n; i++) {
          const raw = await request(port, r, c)
          if (r.limited) raws[who].push(raw.status)
          const o = normalise(raw, names)
          if (r.sni) Object.assign(o, await tlsProbe(port, r.sni))
          got[who].push(o)
          sent++
        }
      }
      const label = `${r.method ?? 'GET'} ${r.to} ${r.host}${r.path}${r.body ? ` (${r.body} bytes)` : ''}${r.from ? ` from ${r.from}` : ''}`
      if (r.limited) {
        const { admitted, status } = r.limited
        const seq = (refused: number) => Array.from({ length: n }, (_, i) => (i < admitted ? 200 : refused))
        assert.deepEqual(raws.nginx, seq(status), `${label}: nginx admits ${admitted} of ${n} and refuses the rest with ${status}`)
        assert.deepEqual(raws.portico, seq(429), `${label}: Portico admits as many and refuses the rest with 429`)
        const admittedOf = (os: Outcome[]) => os.slice(0, admitted)
        assert.deepEqual(admittedOf(got.portico), admittedOf(got.nginx), `${label}: the admitted requests reach the same backend`)
        limitedSeen += n * 2
        continue
      }
      for (const o of got.nginx) assert.equal(o.status, r.expect ?? 200, `${label}: nginx answers as the case intends: ${JSON.stringify(o)}`)
      const compare = r.compare ?? 'each'
      if (compare === 'each') {
        const errorLog = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
        assert.deepEqual(got.portico, got.nginx, `${label}: Portico (actual) vs nginx (expected)\nconvert stderr:\n${stderr}\nconverted:\n${yaml}\nnginx error.log:\n${errorLog.slice(-1500)}`)
      } else {
        const key = (o: Outcome) => JSON.stringify({ ...o, backend: undefined })
        assert.deepEqual(got.portico.map(key), got.nginx.map(key), `${label}: status, path and Host`)
        const backendsOf = (os: Outcome[]) => os.map((o) => o.backend ?? '-').sort()
        if (compare === 'multiset') assert.deepEqual(backendsOf(got.portico), backendsOf(got.nginx), `${label}: the same share of requests per backend`)
        else assert.deepEqual([...new Set(backendsOf(got.portico))], [...new Set(backendsOf(got.nginx))], `${label}: the same backends`)
      }
    }
    t.diagnostic(`${sent} requests (${sent / 2} to each proxy), all equal${limitedSeen > 0 ? ` (${limitedSeen} of them rate-limited bursts: the same admitted, refused with nginx's status and Portico's 429)` : ''}`)
  })
}
