// Fixes and hints name only real Portico keys and real nginx directives, in a block that allows them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CAUSES, CAUSE_TYPES } from '../../src/failures/causes.ts'
import { checkLogs } from '../../src/doctor/logs/index.ts'
import type { CauseSummary, LogSummary } from '../../src/doctor/logs/summary.ts'
import { fixes, NGINX_DEFAULTS, PORTICO_DEFAULTS, targetFromUrl, type Target, type UpstreamProtocol } from '../../src/doctor/probes/target.ts'
import { isUpstreamKey, vocabularyProblems } from './vocabulary.ts'

function targets(): Target[] {
  const out: Target[] = [
    targetFromUrl('http://127.0.0.1:8080', 'portico', PORTICO_DEFAULTS, { upstream: 'api', resolvers: ['127.0.0.1:53'] }),
    targetFromUrl('unix:/run/app.sock', 'portico', PORTICO_DEFAULTS, { upstream: 'api' }),
    targetFromUrl('http://127.0.0.1:8080', 'upstream', PORTICO_DEFAULTS),
  ]
  for (const protocol of ['http', 'fastcgi', 'uwsgi', 'scgi', 'grpc'] as UpstreamProtocol[]) {
    for (const upstream of [undefined, 'app']) {
      out.push(targetFromUrl('http://127.0.0.1:9000/', 'nginx', { ...NGINX_DEFAULTS, keepaliveIdleTimeoutMs: 60_000 }, {
        protocol, pass: `${protocol === 'http' ? 'proxy' : protocol}_pass 127.0.0.1:9000`, location: '`location /` block (nginx.conf:12)', ...(upstream ? { upstream } : {}),
      }))
    }
    out.push(targetFromUrl('http://unix:/run/app.sock:', 'nginx', NGINX_DEFAULTS, { protocol, pass: 'proxy_pass http://unix:/run/app.sock:', location: '`location /` block (nginx.conf:3)' }))
  }
  return out
}

/** Every fix text the `fixes` table can produce for these targets. */
function allFixes(): string[] {
  return targets().flatMap((t) => [
    fixes.keepaliveIdle(t, 150, 200), fixes.responseHeaderTimeout(t, 2500), fixes.responseHeaderTimeout(t, 3000, false),
    fixes.bodyIdleTimeout(t, 1500), fixes.incompleteBody(t), fixes.connect(t, 500), fixes.headerSize(t, 20_000),
    fixes.scheme(t, 'https'), fixes.scheme(t, 'http'), fixes.dns(t, 'x', true), fixes.refused(t),
    fixes.socketMissing(t, 'x'), fixes.socketForbidden(t, 'www-data', 'www-data', 'x'),
  ])
}

function logFixes(system: 'nginx' | 'portico'): string[] {
  const causes: CauseSummary[] = CAUSE_TYPES.map((cause) => ({
    cause, count: 1, byEndpoint: { '127.0.0.1:1': 1 }, byUpstream: { api: 1 }, byStatus: { 502: 1 }, byProtocol: { http: 1 },
    byDetail: { ephemeral_ports_exhausted: 1, open_files_limit: 1, worker_connections: 1, no_resolver: 1 },
    firstSeen: new Date(0), lastSeen: new Date(0), peakMinute: '1970-01-01T00:00', peakCount: 1, samples: [],
  }))
  const summary = { path: 'x.log', failures: causes.length, causes, bursts: [] } as unknown as LogSummary
  return checkLogs(summary, { system }).map((f) => f.fix)
}

test('the checker itself: known keys and directives pass, made-up ones do not', () => {
  assert.equal(isUpstreamKey('timeouts.idle'), true)
  assert.equal(isUpstreamKey('dns.resolvers'), true)
  assert.equal(isUpstreamKey('keepalive.max_connections'), false)
  assert.deepEqual(vocabularyProblems('Set `proxy_read_timeout 4s;` in the `location /` block.'), [])
  assert.equal(vocabularyProblems('Set `keepalive 8;` in the `location /` block.').length, 1)
  assert.equal(vocabularyProblems('Set `proxy_read_timout 4s;`.').length, 1)
  assert.equal(vocabularyProblems('Raise `upstreams.api.keepalive.max_connections`.').length, 1)
})

test('every fix doctor computes names real Portico keys and real nginx directives in their block', () => {
  const problems = allFixes().flatMap((f) => vocabularyProblems(f).map((p) => `${p}\n  in: ${f}`))
  assert.deepEqual(problems, [])
})

test('every hint of the cause table and every log fix names real keys and directives', () => {
  const texts = [...Object.values(CAUSES).map((c) => c.hint), ...logFixes('nginx'), ...logFixes('portico')]
  const problems = texts.flatMap((f) => vocabularyProblems(f).map((p) => `${p}\n  in: ${f}`))
  assert.deepEqual(problems, [])
})
