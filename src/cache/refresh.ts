/**
 * Background fetches for `stale-while-revalidate` (RFC 5861 §3): the request sent to an
 * endpoint of the route's upstream outside any client exchange, the body read whole.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { UpstreamPool } from '../upstream/pool.ts'
import type { FetchedResponse } from './phase.ts'

/**
 * Sends a GET to an available endpoint of `pool`.
 *
 * @param path path and query to send
 * @param headers upstream request header fields, flat `[name, value, ...]`; the client's conditional fields are dropped
 * @param extra fields added (the cache's validators)
 * @param timeoutMs first-byte and body timeout, in ms
 * @throws when no endpoint is available or the exchange fails
 */
export async function fetchFromPool(pool: UpstreamPool, path: string, headers: string[], extra: Record<string, string>, timeoutMs: number): Promise<FetchedResponse> {
  const ep = pool.select([])
  if (ep === null) throw new Error(`upstream ${pool.name} has no endpoint available`)
  const flat: string[] = []
  for (let i = 0; i < headers.length; i += 2) {
    if (!/^if-/i.test(headers[i])) flat.push(headers[i], headers[i + 1])
  }
  for (const [k, v] of Object.entries(extra)) flat.push(k, v)
  const r = await ep.dispatcher.request({ path, method: 'GET', headers: flat, signal: AbortSignal.timeout(timeoutMs) })
  const body: Buffer[] = []
  for await (const chunk of r.body) body.push(chunk as Buffer)
  return { status: r.statusCode, headers: r.headers as IncomingHttpHeaders, body }
}
