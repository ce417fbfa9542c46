/**
 * Cache stores: where stored responses live. The interface is asynchronous so that a
 * shared store (Redis, disk) can replace the in-memory one without changing the cache.
 */
import { LRUCache } from 'lru-cache'
import type CachePolicy from 'http-cache-semantics'

/** Response header fields as stored: lower-case names, values as undici gives them. */
export type StoredHeaders = Record<string, string | string[]>

/** One stored response (one variant of a URL). */
export interface StoredResponse {
  /** The stored status (never 304 or 206). */
  status: number
  /** The response header fields as received, minus hop-by-hop fields. */
  headers: StoredHeaders
  /** The body, as the chunks received. */
  body: Buffer[]
  /** Body length in bytes. */
  bodySize: number
  /** The `http-cache-semantics` policy made from the policy view of the fields (`policyResponse` in fields.ts), serialised with `CachePolicy#toObject()` (restore with `CachePolicy.fromObject()`). */
  policy: CachePolicy.CachePolicyObject
  /** Wall clock time the response was stored or last revalidated, in ms since the epoch. */
  storedAt: number
}

/**
 * Everything stored under one primary key (method, host, path and query, RFC 9111 §2):
 * one response per combination of the request header fields its `Vary` names (§4.1),
 * newest first.
 */
export interface StoreEntry {
  variants: StoredResponse[]
}

/** A place to keep stored responses. Keys are primary cache keys (see `primaryKey` in cache.ts). */
export interface CacheStore {
  /** The entry under `key`, or undefined. */
  get(key: string): Promise<StoreEntry | undefined>
  /** Stores `entry` under `key`, replacing what was there. An entry larger than the store holds is not stored. */
  put(key: string, entry: StoreEntry): Promise<void>
  /** Removes the entry under `key`; resolves to whether there was one. */
  delete(key: string): Promise<boolean>
  /** Removes every entry whose key starts with `prefix`; resolves to how many were removed. */
  deletePrefix(prefix: string): Promise<number>
  /** Bytes held now. */
  readonly size: number
  /** Entries held now. */
  readonly count: number
  /** Releases what the store holds outside the process (a Redis connection); the memory store has nothing to close. */
  close?(): Promise<void>
}

/** Bytes an entry counts for: bodies, header names and values, and a fixed overhead per variant. */
export function entrySize(entry: StoreEntry): number {
  let n = 0
  for (const v of entry.variants) {
    n += v.bodySize + 256
    for (const [k, value] of Object.entries(v.headers)) {
      n += k.length + (Array.isArray(value) ? value.reduce((a, s) => a + s.length, 0) : value.length)
    }
  }
  return Math.max(n, 1)
}

/**
 * The in-memory store: least recently used entries are evicted once the total size is over
 * `maxSize` bytes (lru-cache `maxSize` with `sizeCalculation`).
 */
export class MemoryStore implements CacheStore {
  readonly #lru: LRUCache<string, StoreEntry>

  /** @param maxSize most bytes held (see `entrySize`), the config's `cache.max_size` */
  constructor(maxSize: number) {
    this.#lru = new LRUCache<string, StoreEntry>({ maxSize: Math.max(1, maxSize), sizeCalculation: entrySize })
  }

  get(key: string): Promise<StoreEntry | undefined> {
    return Promise.resolve(this.#lru.get(key))
  }

  put(key: string, entry: StoreEntry): Promise<void> {
    if (entry.variants.length === 0) this.#lru.delete(key)
    // lru-cache refuses (and drops the old value of) an item larger than maxSize.
    else this.#lru.set(key, entry)
    return Promise.resolve()
  }

  delete(key: string): Promise<boolean> {
    return Promise.resolve(this.#lru.delete(key))
  }

  deletePrefix(prefix: string): Promise<number> {
    let n = 0
    for (const key of [...this.#lru.keys()]) {
      if (key.startsWith(prefix) && this.#lru.delete(key)) n++
    }
    return Promise.resolve(n)
  }

  get size(): number {
    return this.#lru.calculatedSize
  }

  get count(): number {
    return this.#lru.size
  }
}
