/**
 * Unit tests of the retry rules (src/proxy/retries.ts): the decision after a failed try,
 * the status retry gate, and the retry budget lease.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { UpstreamConfig } from '../../src/config/schema.ts'
import { compileRetryPolicy, RetryLease, RetryState, retryDecision, statusRetryAllowed, type RetryDecision } from '../../src/proxy/retries.ts'
import type { TryFailure } from '../../src/proxy/try.ts'
import { causeOf } from '../../src/failures/causes.ts'

const ALL = compileRetryPolicy(['connect_failure', 'reset', 'http_response_timeout', 503])
const NONE = compileRetryPolicy([])

function f(type: TryFailure['type'], sent: boolean, reused = false): TryFailure {
  return { type, causeId: type === null ? null : causeOf(type).id, status: type === null ? 503 : null, detail: '', sent, reused }
}

/** [what, failure, policy, idempotent, bodyConsumed, attempts, maxAttempts, raceRetried, expected] */
const cases: Array<[string, TryFailure, typeof ALL, boolean, number, number, number, boolean, RetryDecision]> = [
  ['connection refused, nothing sent: another endpoint', f('connection_refused', false), ALL, false, 0, 1, 2, false, 'another'],
  ['connection refused, POST too (nothing sent)', f('connection_refused', false), ALL, false, 0, 1, 2, false, 'another'],
  ['connection refused without connect_failure in retries.on', f('connection_refused', false), NONE, true, 0, 1, 2, false, 'no'],
  ['connection refused on the last attempt', f('connection_refused', false), ALL, true, 0, 2, 2, false, 'no'],
  ['dns error, nothing sent', f('dns_error', false), ALL, true, 0, 1, 3, false, 'another'],
  ['tls certificate error, nothing sent', f('tls_certificate_error', false), ALL, true, 0, 1, 2, false, 'another'],
  ['reset on a reused connection: once more on a fresh one', f('connection_terminated', true, true), ALL, true, 0, 1, 1, false, 'fresh'],
  ['reset on a reused connection after the fresh retry: another endpoint', f('connection_terminated', true, true), ALL, true, 0, 2, 3, true, 'another'],
  ['reset on a new connection: another endpoint', f('connection_terminated', true, false), ALL, true, 0, 1, 2, false, 'another'],
  ['reset on a new connection on the last attempt', f('connection_terminated', true, false), ALL, true, 0, 2, 2, false, 'no'],
  ['reset of a POST: never (not idempotent)', f('connection_terminated', true, true), ALL, false, 0, 1, 2, false, 'no'],
  ['reset without reset in retries.on', f('connection_terminated', true, true), NONE, true, 0, 1, 2, false, 'no'],
  ['first-byte timeout listed, idempotent', f('http_response_timeout', true), ALL, true, 0, 1, 2, false, 'another'],
  ['first-byte timeout of a POST', f('http_response_timeout', true), ALL, false, 0, 1, 2, false, 'no'],
  ['first-byte timeout not listed', f('http_response_timeout', true), NONE, true, 0, 1, 2, false, 'no'],
  ['a status of retries.on (pre-approved): another', f(null, true), ALL, true, 0, 1, 2, false, 'another'],
  ['body bytes taken from the client: never', f('connection_refused', false), ALL, true, 10, 1, 2, false, 'no'],
  ['reused reset with body taken: never', f('connection_terminated', true, true), ALL, true, 1, 1, 2, false, 'no'],
  ['protocol error after sending: never', f('http_protocol_error', true), ALL, true, 0, 1, 2, false, 'no'],
  ['refused upgrade: never', f('http_upgrade_failed', true), ALL, true, 0, 1, 2, false, 'no'],
  ['connect timeout, nothing sent', f('connection_timeout', false), ALL, true, 0, 1, 2, false, 'another'],
]

for (const [what, failure, policy, idempotent, body, attempts, max, raced, expected] of cases) {
  test(`retryDecision: ${what} → ${expected}`, () => {
    assert.equal(retryDecision(failure, policy, idempotent, body, attempts, max, raced), expected)
  })
}

test('statusRetryAllowed: idempotent, without a body, statuses listed, attempts left', () => {
  assert.equal(statusRetryAllowed(ALL, true, false, 1, 2), true)
  assert.equal(statusRetryAllowed(ALL, false, false, 1, 2), false)
  assert.equal(statusRetryAllowed(ALL, true, true, 1, 2), false)
  assert.equal(statusRetryAllowed(ALL, true, false, 2, 2), false)
  assert.equal(statusRetryAllowed(NONE, true, false, 1, 2), false)
})

test('compileRetryPolicy reads retries.on', () => {
  const p = compileRetryPolicy(['reset', 502, 504])
  assert.deepEqual({ connect: p.connect, reset: p.reset, timeout: p.timeout, statuses: [...p.statuses] }, { connect: false, reset: true, timeout: false, statuses: [502, 504] })
})

function state(ratio: number, min: number): RetryState {
  return new RetryState({ attempts: 2, on: ['reset'], budget: { ratio, min_concurrency: min } } as unknown as UpstreamConfig['retries'])
}

test('RetryLease: min_concurrency places are always there; beyond them ratio × active requests', () => {
  const s = state(0.5, 1)
  s.active = 4
  const leases = [new RetryLease(s), new RetryLease(s), new RetryLease(s)]
  assert.equal(leases[0].acquire(), true)
  assert.equal(leases[1].acquire(), true, '0.5 × 4 = 2 places')
  assert.equal(leases[2].acquire(), false)
  assert.equal(s.retrying, 2)
  assert.equal(s.counts.budget_exhausted, 1)
  leases[0].release()
  assert.equal(leases[2].acquire(), true, 'a released place is free again')
})

test('RetryLease: acquiring twice keeps one place; release is idempotent', () => {
  const s = state(0, 1)
  const l = new RetryLease(s)
  assert.equal(l.acquire(), true)
  assert.equal(l.acquire(), true)
  assert.equal(s.retrying, 1)
  l.release()
  l.release()
  assert.equal(s.retrying, 0)
})

test('RetryLease: a budget of 0 refuses every retry', () => {
  const s = state(0, 0)
  s.active = 100
  assert.equal(new RetryLease(s).acquire(), false)
  assert.equal(s.counts.budget_exhausted, 1)
})
