// One ordered list of lifecycle phases; the classifier's stages are a subset of it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FAILURE_STAGES, isBefore, LIFECYCLE_PHASES, phaseIndex } from '../../src/failures/lifecycle.ts'
import { classify } from '../../src/failures/classify.ts'

test('the phases run in the order of the request lifecycle (DESIGN §1)', () => {
  assert.deepEqual([...LIFECYCLE_PHASES], [
    'accept', 'parse', 'validate_request', 'route', 'cache_lookup', 'select_endpoint', 'connect', 'send_request',
    'await_response_header', 'cache_store', 'stream_response', 'log',
  ])
  LIFECYCLE_PHASES.forEach((p, i) => assert.equal(phaseIndex(p), i))
  assert.ok(isBefore('connect', 'send_request'))
  assert.ok(!isBefore('stream_response', 'await_response_header'))
  assert.ok(!isBefore('route', 'route'))
})

test('the failure stages are phases of the list, in lifecycle order', () => {
  for (const s of FAILURE_STAGES) assert.ok(LIFECYCLE_PHASES.includes(s), s)
  const order = FAILURE_STAGES.map(phaseIndex)
  assert.deepEqual(order, [...order].sort((a, b) => a - b))
})

test('the classifier reads the same errno by the stage it happened in', () => {
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
  const timedOut = Object.assign(new Error('ETIMEDOUT'), { code: 'ETIMEDOUT' })
  assert.equal(classify(reset, 'await_response_header').type, 'connection_terminated')
  assert.equal(classify(reset, 'stream_response').type, 'http_response_incomplete')
  assert.equal(classify(timedOut, 'connect').type, 'connection_timeout')
  assert.equal(classify(timedOut, 'await_response_header').type, 'http_response_timeout')
})
