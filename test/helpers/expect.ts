/**
 * Assertions shared by gateway tests: a proxy-generated error seen by the client and in
 * the access log together, and the shape of an access log record.
 */
import assert from 'node:assert/strict'
import { parseProxyStatus } from '../../src/failures/proxy-status.ts'
import type { AccessLogRecord } from '../../src/observe/access-log.ts'
import { header, type Reply } from './client.ts'
import type { TestGateway } from './gateway.ts'

/** The `Proxy-Status` parameters of the member Portico added (the last one). */
export function ownProxyStatus(reply: Pick<Reply, 'headers'>, proxy = 'portico'): Record<string, string | number | boolean> {
  const members = parseProxyStatus(header(reply, 'proxy-status'))
  const own = members.at(-1)
  assert.ok(own, `no Proxy-Status member in ${JSON.stringify(reply.headers)}`)
  assert.equal(own.proxy, proxy)
  return own.params
}

/** Timings are the four connection timings, each null or a non-negative number of ms. */
export function assertTimingsShape(r: AccessLogRecord): void {
  assert.deepEqual(Object.keys(r.timings).sort(), ['connect_ms', 'dns_ms', 'tls_ms', 'ttfb_ms'])
  for (const [k, v] of Object.entries(r.timings)) {
    assert.ok(v === null || (typeof v === 'number' && v >= 0), `timings.${k} = ${v}`)
  }
}

/** What a gateway test expects of one request, client side and log side. */
export interface Expected {
  status: number
  /** RFC 9209 type, or null for a relayed response. */
  error: string | null
  /** `host:port` of the endpoint tried last; null when none was. */
  endpoint?: string | null
  attempts?: number
  /** Status in the log when it differs from the client's (e.g. 200 for a body aborted mid-way). */
  loggedStatus?: number
  downstream?: string
}

/**
 * Checks the client's reply and the access log record together: status, `Proxy-Status`
 * error type, `X-Request-Id` present and equal to the record's, and the record's error,
 * status, attempts, endpoint and timings shape.
 *
 * @returns the record
 */
export async function expectExchange(gw: TestGateway, reply: Reply, want: Expected): Promise<AccessLogRecord> {
  assert.equal(reply.status, want.status, `status (body: ${reply.body.toString('utf8').slice(0, 300)})`)
  const id = header(reply, 'x-request-id')
  assert.ok(id.length > 0, 'X-Request-Id missing')
  const own = ownProxyStatus(reply)
  if (want.error === null) {
    assert.equal(own.error, undefined, `Proxy-Status ${header(reply, 'proxy-status')}`)
    assert.equal(own['received-status'], want.status)
  } else {
    assert.equal(own.error, want.error, `Proxy-Status ${header(reply, 'proxy-status')}`)
  }
  const r = await gw.record(id)
  assert.equal(r.request_id, id)
  assert.equal(r.error, want.error, `logged error (details: ${r.details})`)
  assert.equal(r.status, want.loggedStatus ?? want.status)
  if (want.attempts !== undefined) assert.equal(r.attempts, want.attempts, 'attempts')
  if (want.endpoint !== undefined) assert.equal(r.endpoint, want.endpoint, 'endpoint')
  assert.equal(r.downstream, want.downstream)
  assertTimingsShape(r)
  return r
}

/** `host:port` of a lab or upstream URL, as the access log writes endpoints. */
export function endpointOf(url: string): string {
  const u = new URL(url)
  return `${u.hostname}:${u.port || (u.protocol === 'https:' ? 443 : 80)}`
}
