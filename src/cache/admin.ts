/**
 * The cache's part of the admin API: `POST /cache/purge` with `{ "url": "..." }` (one URL,
 * e.g. `http://example.com/a?b=1`) or `{ "prefix": "..." }` (every URL starting with it).
 */
import type { IncomingMessage } from 'node:http'
import type { HttpCache } from './cache.ts'
import { TieredStore } from './redis-store.ts'

/** Largest admin request body read, in bytes. */
const MAX_BODY = 64 * 1024

/**
 * Reads a request body as text, up to 64 KiB (the rest is discarded).
 *
 * @returns the text, empty when there is no body
 */
export async function readAdminBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size <= MAX_BODY) chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** `GET /cache` body: the memory tier's use and the Redis tier's state and counts (null without one). */
export interface CacheView {
  memory: { max_size: number; stored_bytes: number; entries: number }
  redis: { url: string; available: boolean; timeout_ms: number; hits: number; misses: number; writes: number; errors: number; timeouts: number } | null
}

/** Handles `GET /cache`. */
export function cacheView(cache: HttpCache): CacheView {
  const s = cache.store
  const redis = s instanceof TieredStore ? { ...s.redis, timeout_ms: s.config.timeout } : null
  return { memory: { max_size: cache.maxSize, stored_bytes: s.size, entries: s.count }, redis }
}

/** The admin reply: a status and a JSON body. */
export interface PurgeReply {
  status: number
  body: unknown
}

/**
 * Handles `POST /cache/purge`.
 *
 * @param body the request body: JSON `{ "url": "<absolute URL>" }` or `{ "prefix": "<URL prefix>" }`
 * @returns 200 `{ purged: N }`, or 400 `{ error: 'invalid_request', message }`
 */
export async function purge(cache: HttpCache, body: string): Promise<PurgeReply> {
  let what: unknown
  try {
    what = JSON.parse(body)
  } catch {
    return { status: 400, body: { error: 'invalid_request', message: 'expected a JSON body {"url": "..."} or {"prefix": "..."}' } }
  }
  const w = what as { url?: unknown; prefix?: unknown } | null
  if (w !== null && typeof w === 'object' && typeof w.url === 'string' && w.url !== '') return { status: 200, body: { purged: await cache.purge({ url: w.url }) } }
  if (w !== null && typeof w === 'object' && typeof w.prefix === 'string' && w.prefix !== '') return { status: 200, body: { purged: await cache.purge({ prefix: w.prefix }) } }
  return { status: 400, body: { error: 'invalid_request', message: 'expected {"url": "..."} or {"prefix": "..."} with a non-empty string' } }
}
