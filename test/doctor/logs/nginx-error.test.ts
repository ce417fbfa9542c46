// Tests of the nginx error.log reader: every upstream message nginx writes, mapped to its cause.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseNginxErrorLine, isNginxErrorLine } from '../../../src/doctor/logs/nginx-error.ts'
import type { CauseType } from '../../../src/failures/causes.ts'

const P = '2026/11/20 10:15:32 [error] 1234#1234: *567 '
const C = ', client: 127.0.0.1, server: _, request: "GET / HTTP/1.1"'
const H = ', host: "127.0.0.1:8080"'

/** [message as nginx writes it (full line), cause, endpoint, detail]. */
const CASES: [string, CauseType, string | null, string][] = [
  [`${P}connect() failed (111: Connection refused) while connecting to upstream${C}, upstream: "http://127.0.0.1:3000/"${H}`, 'connection_refused', '127.0.0.1:3000', 'refused'],
  [`${P}upstream timed out (110: Connection timed out) while connecting to upstream${C}, upstream: "http://10.0.0.5:8080/"${H}`, 'connection_timeout', '10.0.0.5:8080', 'connect_timeout'],
  [`${P}upstream timed out (110: Connection timed out) while reading response header from upstream${C}, upstream: "http://127.0.0.1:3000/slow"${H}`, 'http_response_timeout', '127.0.0.1:3000', 'header_timeout'],
  [`${P}upstream prematurely closed connection while reading response header from upstream${C}, upstream: "http://127.0.0.1:3000/"${H}`, 'connection_terminated', '127.0.0.1:3000', 'closed_before_header'],
  [`${P}upstream prematurely closed connection while reading upstream${C}, upstream: "http://127.0.0.1:3000/big"${H}`, 'http_response_incomplete', '127.0.0.1:3000', 'closed_mid_body'],
  [`${P}recv() failed (104: Connection reset by peer) while reading response header from upstream${C}, upstream: "http://127.0.0.1:3000/"${H}`, 'connection_terminated', '127.0.0.1:3000', 'reset_before_header'],
  [`${P}readv() failed (104: Connection reset by peer) while reading upstream${C}, upstream: "http://127.0.0.1:3000/stream"${H}`, 'http_response_incomplete', '127.0.0.1:3000', 'reset_mid_body'],
  [`${P}upstream timed out (110: Connection timed out) while reading upstream${C}, upstream: "http://127.0.0.1:3000/stream"${H}`, 'connection_read_timeout', '127.0.0.1:3000', 'body_timeout'],
  [`${P}upstream sent too big header while reading response header from upstream${C}, upstream: "http://127.0.0.1:3000/"${H}`, 'http_response_header_section_size', '127.0.0.1:3000', 'header_too_big'],
  [`${P}upstream sent invalid header: "X-Bad\\x01..." while reading response header from upstream${C}, upstream: "http://127.0.0.1:3000/"${H}`, 'http_protocol_error', '127.0.0.1:3000', 'invalid_response'],
  [`${P}upstream sent no valid HTTP/1.0 header while reading response header from upstream${C}, upstream: "http://127.0.0.1:8443/"${H}`, 'http_protocol_error', '127.0.0.1:8443', 'invalid_response'],
  [`2026/11/20 10:15:32 [error] 1234#1234: *567 no live upstreams while connecting to upstream${C}, upstream: "http://backend/"${H}`, 'destination_unavailable', null, 'no_live_upstreams'],
  [`${P}app.internal could not be resolved (3: Host not found)${C}${H}`, 'dns_error', 'app.internal', 'not_resolved'],
  [`${P}app.internal could not be resolved (110: Operation timed out)${C}${H}`, 'dns_timeout', 'app.internal', 'resolver_timeout'],
  [`${P}SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream${C}, upstream: "https://127.0.0.1:3000/"${H}`, 'tls_protocol_error', '127.0.0.1:3000', 'handshake'],
  [`${P}upstream SSL certificate verify error: (10:certificate has expired) while SSL handshaking to upstream${C}, upstream: "https://10.0.0.7:443/"${H}`, 'tls_certificate_error', '10.0.0.7:443', 'certificate_verify'],
  [`${P}upstream SSL certificate does not match "api.example.com" while SSL handshaking to upstream${C}, upstream: "https://10.0.0.7:443/"${H}`, 'tls_certificate_error', '10.0.0.7:443', 'certificate_name'],
  [`2026/11/20 10:15:32 [crit] 1234#1234: *567 connect() to 127.0.0.1:3000 failed (99: Cannot assign requested address) while connecting to upstream${C}, upstream: "http://127.0.0.1:3000/"${H}`, 'connection_limit_reached', '127.0.0.1:3000', 'ephemeral_ports_exhausted'],
  [`${P}connect() failed (113: No route to host) while connecting to upstream${C}, upstream: "http://10.9.9.9:80/"${H}`, 'destination_ip_unroutable', '10.9.9.9:80', 'no_route'],
  [`2026/11/20 10:15:32 [alert] 1234#1234: *567 socket() failed (24: Too many open files) while connecting to upstream${C}, upstream: "http://127.0.0.1:3000/"${H}`, 'connection_limit_reached', '127.0.0.1:3000', 'open_files_limit'],
  ['2026/11/20 10:15:32 [alert] 1234#1234: 768 worker_connections are not enough', 'connection_limit_reached', null, 'worker_connections'],
  ['2026/11/20 10:15:32 [emerg] 1#1: host not found in upstream "app.internal:8080" in /etc/nginx/conf.d/default.conf:10', 'dns_error', 'app.internal:8080', 'not_resolved_at_start'],
  [`${P}no resolver defined to resolve app.internal${C}${H}`, 'dns_error', null, 'no_resolver'],
  [`2026/11/20 10:15:32 [crit] 1234#1234: *567 connect() to 127.0.0.1:3000 failed (110: Connection timed out) while connecting to upstream${C}, upstream: "http://127.0.0.1:3000/"${H}`, 'connection_timeout', '127.0.0.1:3000', 'connect_timeout'],
  [`${P}writev() failed (32: Broken pipe) while sending request to upstream${C}, upstream: "http://127.0.0.1:3000/upload"${H}`, 'connection_terminated', '127.0.0.1:3000', 'reset_before_header'],
]

for (const [raw, cause, endpoint, detail] of CASES) {
  test(`nginx error.log: ${detail} → ${cause}`, () => {
    const e = parseNginxErrorLine(raw, 42)
    assert.ok(e, 'line parsed')
    assert.equal(e.cause, cause)
    assert.equal(e.endpoint, endpoint)
    assert.equal(e.detail, detail)
    assert.equal(e.line, 42)
    assert.equal(e.source, 'nginx-error')
    assert.equal(e.raw, raw)
    assert.deepEqual(e.ts, new Date(2026, 10, 20, 10, 15, 32))
  })
}

test('context fields: client, server, request, host; upstream block name', () => {
  const e = parseNginxErrorLine(CASES[0][0], 1)
  assert.equal(e?.client, '127.0.0.1')
  assert.equal(e?.server, '_')
  assert.equal(e?.request, 'GET / HTTP/1.1')
  assert.equal(e?.host, '127.0.0.1:8080')
  assert.equal(e?.status, 502)
  assert.equal(e?.message, 'connect() failed (111: Connection refused) while connecting to upstream')
  const nl = parseNginxErrorLine(CASES[11][0], 1)
  assert.equal(nl?.upstream, 'backend')
  assert.equal(parseNginxErrorLine(CASES[2][0], 1)?.status, 504)
  assert.equal(parseNginxErrorLine(CASES[4][0], 1)?.status, null, 'mid-body: the status was already sent')
})

test('non-upstream lines parse with no cause; other text is not an error.log line', () => {
  const e = parseNginxErrorLine('2026/11/20 10:15:32 [error] 1234#1234: *1 open() "/usr/share/nginx/html/favicon.ico" failed (2: No such file or directory), client: 127.0.0.1, server: _, request: "GET /favicon.ico HTTP/1.1", host: "localhost"', 3)
  assert.equal(e?.cause, null)
  assert.equal(parseNginxErrorLine('127.0.0.1 - - [20/Nov/2026:10:15:32 +0000] "GET / HTTP/1.1" 502 157 "-" "curl/8.5.0"', 1), null)
  assert.equal(isNginxErrorLine('2026/11/20 10:15:32 [notice] 1#1: start worker processes'), true)
})

test('unix sockets, other pass modules and the resolver\'s own lines', () => {
  const line = (msg: string, up = 'http://unix:/run/app.sock:/') => parseNginxErrorLine(`2026/11/20 10:15:32 [crit] 12#12: *5 ${msg}, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "${up}", host: "x"`, 1)
  const missing = line('connect() to unix:/run/app.sock failed (2: No such file or directory) while connecting to upstream')
  assert.deepEqual([missing?.cause, missing?.detail, missing?.endpoint, missing?.status], ['connection_refused', 'unix_missing', 'unix:/run/app.sock', 502])
  assert.equal(line('connect() to unix:/run/app.sock failed (13: Permission denied) while connecting to upstream')?.detail, 'unix_forbidden')
  const fcgi = line('connect() failed (111: Connection refused) while connecting to upstream', 'fastcgi://127.0.0.1:9000')
  assert.deepEqual([fcgi?.cause, fcgi?.protocol, fcgi?.endpoint], ['connection_refused', 'fastcgi', '127.0.0.1:9000'])
  assert.equal(line('upstream sent unsupported FastCGI protocol version: 72 while reading response header from upstream', 'fastcgi://127.0.0.1:8080')?.cause, 'http_protocol_error')
  // The resolver's socket errors are not upstream connections: no cause, not counted as a gateway error.
  const resolver = parseNginxErrorLine('2026/11/20 10:15:32 [error] 12#12: send() failed (111: Connection refused) while resolving, resolver: 127.0.0.1:53', 1)
  assert.deepEqual([resolver?.cause, resolver?.detail], [null, 'resolver_io'])
})
