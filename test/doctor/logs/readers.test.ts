// Tests of the access log readers (nginx combined/custom, Portico JSON/text), format detection and --since.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import {
  parseNginxAccessLine, compileLogFormat, parsePorticoJsonLine, parsePorticoTextLine, detectFormat, parseSince,
} from '../../../src/doctor/logs/index.ts'
import { readNginxConfig } from '../../../src/doctor/nginx/index.ts'

const FIX = resolve(import.meta.dirname, '../../fixtures/logs')
const lines = (name: string): string[] => readFileSync(resolve(FIX, name), 'utf8').split('\n').filter(Boolean)

test('nginx combined line', () => {
  const [, bad, post] = lines('nginx-access-combined.log')
  const e = parseNginxAccessLine(bad, 2)
  assert.ok(e)
  assert.equal(e.status, 502)
  assert.equal(e.cause, null, 'an access log does not say why')
  assert.deepEqual(e.ts, new Date('2026-11-20T10:15:32Z'))
  assert.equal(e.request, 'GET /api/users HTTP/1.1')
  assert.equal(e.client, '127.0.0.1')
  assert.equal(e.endpoint, null)
  const p = parseNginxAccessLine(post, 3)
  assert.equal(p?.status, 504)
})

test('time_local offsets are honoured', () => {
  const e = parseNginxAccessLine('127.0.0.1 - - [20/Nov/2026:11:15:32 +0100] "GET / HTTP/1.1" 502 157 "-" "curl/8.5.0"', 1)
  assert.deepEqual(e?.ts, new Date('2026-11-20T10:15:32Z'))
})

test('combined with key=value upstream fields, without knowing the log_format', () => {
  const [, bad, slow] = lines('nginx-access-upstream.log')
  const e = parseNginxAccessLine(bad, 2)
  assert.equal(e?.endpoint, '127.0.0.1:3000')
  assert.equal(e?.detail, 'upstream_status=502')
  const s = parseNginxAccessLine(slow, 3)
  assert.equal(s?.endpoint, '127.0.0.1:3001', 'the last server tried')
  assert.equal(s?.detail, 'upstream_status=504')
})

test('combined with bare appended fields: $request_time $upstream_response_time $upstream_addr $upstream_status $request_id', () => {
  const raw = '10.0.0.9 - - [20/Nov/2026:10:15:32 +0000] "GET /x HTTP/1.1" 502 157 "-" "curl/8.5.0" 0.004 0.003 10.0.0.21:8080 502 3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6'
  const e = parseNginxAccessLine(raw, 1)
  assert.equal(e?.endpoint, '10.0.0.21:8080')
  assert.equal(e?.detail, 'upstream_status=502')
  assert.equal(e?.requestId, '3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6')
})

test('custom log_format from the nginx configuration', async () => {
  const model = await readNginxConfig(resolve(import.meta.dirname, '../../fixtures/nginx/site/nginx.conf'))
  const parser = compileLogFormat(model.accessLogs[0].formatString ?? '')
  const [, , slow] = lines('nginx-access-upstream.log')
  const f = parser(slow)
  assert.equal(f?.upstream_addr, '127.0.0.1:3000, 127.0.0.1:3001')
  assert.equal(f?.upstream_response_time, '30.000, 30.001')
  assert.equal(f?.request_time, '60.001')
  const e = parseNginxAccessLine(slow, 3, parser)
  assert.equal(e?.status, 504)
  assert.equal(e?.endpoint, '127.0.0.1:3001')
})

test('a log_format with $time_iso8601, $request_id and ${var} braces', () => {
  const parser = compileLogFormat('${time_iso8601} $request_id $status "$upstream_addr" $upstream_status')
  const e = parseNginxAccessLine('2026-11-20T10:15:32+00:00 ab12cd34ef56ab12cd34ef56ab12cd34 504 "10.0.0.2:80 : 10.0.0.3:80" 504', 1, parser)
  assert.equal(e?.requestId, 'ab12cd34ef56ab12cd34ef56ab12cd34')
  assert.equal(e?.endpoint, '10.0.0.3:80')
  assert.deepEqual(e?.ts, new Date('2026-11-20T10:15:32Z'))
  assert.equal(parseNginxAccessLine('not a line', 1, parser), null)
})

test('Portico JSON lines: cause from error; a relayed 502 has none', () => {
  const [ok, refused, timeout, relayed] = lines('portico.jsonl')
  assert.equal(parsePorticoJsonLine(ok, 1)?.cause, null)
  const r = parsePorticoJsonLine(refused, 2)
  assert.equal(r?.cause, 'connection_refused')
  assert.equal(r?.upstream, 'api')
  assert.equal(r?.endpoint, '127.0.0.1:3001')
  assert.equal(r?.requestId, '0a2b4c6d8e0f4a1b9c3d5e7f9a1b3c5d')
  assert.equal(r?.status, 502)
  assert.equal(parsePorticoJsonLine(timeout, 3)?.cause, 'http_response_timeout')
  const rel = parsePorticoJsonLine(relayed, 4)
  assert.equal(rel?.status, 502)
  assert.equal(rel?.cause, null)
  assert.equal(parsePorticoJsonLine('{"msg":"listening"}', 5), null)
  assert.equal(parsePorticoJsonLine('{not json', 6), null)
})

test('Portico text line', () => {
  const raw = '2026-11-20T10:15:32.000Z 127.0.0.1 "GET api.example.test/v1/users HTTP/1.1" 502 311 1.1ms route=api upstream=api endpoint=127.0.0.1:3001 upstream_status=- attempts=2 reused=false ttfb=-ms error=connection_refused details="connect ECONNREFUSED 127.0.0.1:3001" id=0a2b4c6d'
  const e = parsePorticoTextLine(raw, 1)
  assert.equal(e?.cause, 'connection_refused')
  assert.equal(e?.endpoint, '127.0.0.1:3001')
  assert.equal(e?.requestId, '0a2b4c6d')
  assert.equal(e?.detail, 'connect ECONNREFUSED 127.0.0.1:3001')
})

test('detectFormat', () => {
  assert.equal(detectFormat(lines('portico.jsonl')), 'portico-json')
  assert.equal(detectFormat(lines('nginx-error.log')), 'nginx-error')
  assert.equal(detectFormat(lines('nginx-access-combined.log')), 'nginx-access')
  assert.equal(detectFormat(lines('nginx-access-upstream.log')), 'nginx-access')
  assert.equal(detectFormat(['hello', 'world']), 'unknown')
  assert.equal(detectFormat([]), 'unknown')
})

test('parseSince: durations back from now and ISO dates', () => {
  const now = new Date('2026-11-20T12:00:00Z')
  assert.deepEqual(parseSince('15m', now), new Date('2026-11-20T11:45:00Z'))
  assert.deepEqual(parseSince('2h', now), new Date('2026-11-20T10:00:00Z'))
  assert.deepEqual(parseSince('90s', now), new Date('2026-11-20T11:58:30Z'))
  assert.deepEqual(parseSince('1d', now), new Date('2026-11-19T12:00:00Z'))
  assert.deepEqual(parseSince('2026-11-20T10:00:00Z'), new Date('2026-11-20T10:00:00Z'))
  assert.throws(() => parseSince('yesterday'), RangeError)
  assert.throws(() => parseSince('15 minutes'), RangeError)
})
