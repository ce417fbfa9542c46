/**
 * The scenario list covers every fault mode and names a real RFC 9209 type for each; latency draws follow their distribution.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CAUSE_TYPES } from '../../src/failures/causes.ts'
import { findScenario, sampleLatency, SCENARIOS, type FaultMode } from '../../src/lab/index.ts'

const FAULTS: FaultMode[] = [
  'refuse', 'connect-timeout', 'hang', 'reset-before-header', 'close-before-header', 'garbage', 'tls',
  'plain-behind-https', 'big-header', 'slow', 'slow-body', 'reset-mid-body', 'idle-mid-body', 'keepalive-race', 'dns-invalid',
]

test('every fault mode is a scenario under its own name', () => {
  for (const mode of FAULTS) assert.equal(findScenario(mode)?.mode, mode, mode)
  assert.equal(findScenario('tls-on-plain')?.mode, 'tls')
  assert.equal(findScenario('ok'), undefined)
})

test('scenario names are unique and expect a known cause', () => {
  assert.equal(new Set(SCENARIOS.map((s) => s.name)).size, SCENARIOS.length)
  for (const s of SCENARIOS) {
    assert.ok(CAUSE_TYPES.includes(s.expect), `${s.name} expects ${s.expect}`)
    assert.ok(s.description.length > 10, s.name)
  }
})

test('scenarios expect the cause DESIGN.md gives for their fault', () => {
  const expected: Record<string, string> = {
    refuse: 'connection_refused', 'connect-timeout': 'connection_timeout', 'dns-invalid': 'dns_error',
    hang: 'http_response_timeout', 'reset-before-header': 'connection_terminated', 'close-before-header': 'connection_terminated',
    garbage: 'http_protocol_error', 'tls-on-plain': 'http_protocol_error', 'plain-behind-https': 'tls_protocol_error',
    'big-header': 'http_response_header_section_size', 'reset-mid-body': 'http_response_incomplete',
    'idle-mid-body': 'connection_read_timeout', 'keepalive-race': 'connection_terminated',
  }
  for (const [name, cause] of Object.entries(expected)) assert.equal(findScenario(name)?.expect, cause, name)
})

test('a fixed latency is returned as is; bad ones throw RangeError', () => {
  assert.equal(sampleLatency(25), 25)
  assert.throws(() => sampleLatency(-1), RangeError)
  assert.throws(() => sampleLatency({ p50: 0, p99: 10 }), RangeError)
  assert.throws(() => sampleLatency({ p50: 100, p99: 50 }), RangeError)
})

test('a latency distribution has the requested p50 and p99', () => {
  // A seeded generator (mulberry32) keeps the test reproducible.
  let seed = 42
  const random = (): number => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const draws = Array.from({ length: 20_000 }, () => sampleLatency({ p50: 50, p99: 400 }, random)).sort((a, b) => a - b)
  const p50 = draws[Math.floor(draws.length * 0.5)]
  const p99 = draws[Math.floor(draws.length * 0.99)]
  assert.ok(p50 >= 45 && p50 <= 55, `p50 ${p50}`)
  assert.ok(p99 >= 340 && p99 <= 470, `p99 ${p99}`)
  assert.ok(draws[0] >= 0)
})
