// The error page takes its status, title and hint from the cause table.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CAUSES, CAUSE_IDS } from '../../src/failures/causes.ts'
import { errorStatus, renderErrorPage, statusText } from '../../src/failures/error-page.ts'

test('the 413 page of the body limit says 413 Content Too Large and the body-limit title', () => {
  const input = { cause: 'http_request_denied.body_too_large' as const, requestId: 'r1', expose: false }
  const html = renderErrorPage(input, false).body
  assert.match(html, /<title>413 Content Too Large<\/title>/)
  assert.match(html, /<h1>413 Content Too Large<\/h1>/)
  assert.match(html, /<b>The request body is larger than this listener accepts<\/b> \(<code>http_request_denied<\/code>\)/)
  assert.ok(!/access rule|rate limit/.test(html), 'not the title of another refusal')
  const json = JSON.parse(renderErrorPage(input, true).body)
  assert.equal(json.status, 413)
  assert.equal(json.error, 'http_request_denied')
  assert.equal(json.title, CAUSES['http_request_denied.body_too_large'].title)
  assert.equal(json.hint, CAUSES['http_request_denied.body_too_large'].hint)
})

test('every row renders with its own status, a reason phrase, its title and its hint', () => {
  for (const id of CAUSE_IDS) {
    const c = CAUSES[id]
    const status = errorStatus(id)
    assert.equal(status, c.status ?? 502, id)
    assert.notEqual(statusText(status), 'Error', `${id}: no reason phrase for ${status}`)
    const json = JSON.parse(renderErrorPage({ cause: id, requestId: 'r', expose: false }, true).body)
    assert.deepEqual([json.status, json.error, json.title, json.hint], [status, c.type, c.title, c.hint], id)
    const html = renderErrorPage({ cause: id, requestId: 'r', expose: false }, false).body
    assert.ok(html.includes(`<title>${status} ${statusText(status)}</title>`), id)
  }
})
