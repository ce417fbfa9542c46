/**
 * The Redis tier: a second cache tier behind the memory store, shared by every Portico host
 * that names the same Redis (`cache.store.redis`), through node-redis.
 *
 * Reads go to memory first; a memory miss asks Redis, and what Redis has is copied into
 * memory. Writes go to memory, then to Redis in the background. Redis is never required
 * for serving: every command is bounded by `timeout` (a late answer counts as a miss), no
 * command is sent while the connection is down (node-redis reconnects in the background),
 * and failures are counted, logged when the state changes, and shown by
 * `portico_cache_redis_up` / `portico_cache_redis_failures_total` and `GET /cache`.
 */
import CachePolicy from 'http-cache-semantics'
import { logger } from '../lib/logger.ts'
import { MemoryStore, type CacheStore, type StoreEntry, type StoredResponse } from './store.ts'

/** `cache.store.redis` with defaults applied. */
export interface RedisTierConfig {
  /** `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. */
  url: string
  /** Longest wait for one Redis command on the request path, ms. */
  timeout: number
  /** Prefix of every key Portico writes (several caches can share one Redis). */
  key_prefix: string
}

/** The Redis tier's state and counts since it was created, as `GET /cache` and the metrics show them. */
export interface RedisTierStats {
  /** The URL without its password. */
  url: string
  /** Whether the connection is up now (commands are sent only then). */
  available: boolean
  /** Entries found in Redis after a memory miss. */
  hits: number
  /** Memory misses Redis did not have either. */
  misses: number
  /** Entries written. */
  writes: number
  /** Commands that failed (connection lost, error reply, unreadable entry). */
  errors: number
  /** Commands not answered within `timeout`. */
  timeouts: number
}

/** Seconds a stale entry is kept in Redis past its freshness, for revalidation and serve-stale. */
const STALE_RETENTION_S = 3600
/** Longest wait for a purge by prefix (a SCAN over the keyspace), ms. */
const PURGE_TIMEOUT_MS = 10_000
/** Format version of a stored entry; an entry of another version is a miss. */
const FORMAT = 1

/**
 * The node-redis client surface this tier uses: `sendCommand` with raw command arguments
 * (bulk strings back as Buffers where asked), as node-redis's base `RedisClient` has it.
 */
export interface RedisClientLike {
  isReady: boolean
  on(event: string, listener: (...args: unknown[]) => void): unknown
  connect(): Promise<unknown>
  sendCommand<T>(args: Array<string | Buffer>, options?: { typeMapping?: Record<number, unknown> }): Promise<T>
  destroy(): void
}

/** Reply type mapping for GET: bulk strings as Buffers (RESP_TYPES.BLOB_STRING is 36, `$`). */
const BUFFER_REPLIES = { typeMapping: { 36: Buffer } }

/**
 * Serialises an entry: a 4-byte big-endian length, that many bytes of JSON (each variant's
 * status, fields, body size, `http-cache-semantics` policy object and time stored), then the
 * bodies one after the other.
 */
export function encodeEntry(entry: StoreEntry): Buffer {
  const meta = JSON.stringify({ v: FORMAT, variants: entry.variants.map((r) => ({ status: r.status, headers: r.headers, bodySize: r.bodySize, policy: r.policy, storedAt: r.storedAt })) })
  const head = Buffer.from(meta, 'utf8')
  const len = Buffer.allocUnsafe(4)
  len.writeUInt32BE(head.length, 0)
  return Buffer.concat([len, head, ...entry.variants.flatMap((r) => r.body)])
}

/** The entry {@link encodeEntry} made, or undefined when `buf` is not one (another format, truncated). */
export function decodeEntry(buf: Buffer): StoreEntry | undefined {
  if (buf.length < 4) return undefined
  const n = buf.readUInt32BE(0)
  if (4 + n > buf.length) return undefined
  let meta: { v: number; variants: Omit<StoredResponse, 'body'>[] }
  try {
    meta = JSON.parse(buf.toString('utf8', 4, 4 + n))
  } catch {
    return undefined
  }
  if (meta.v !== FORMAT || !Array.isArray(meta.variants)) return undefined
  let at = 4 + n
  const variants: StoredResponse[] = []
  for (const m of meta.variants) {
    if (at + m.bodySize > buf.length) return undefined
    // A copy: the variant must not keep the whole received buffer alive.
    variants.push({ ...m, body: m.bodySize === 0 ? [] : [Buffer.from(buf.subarray(at, at + m.bodySize))] })
    at += m.bodySize
  }
  return at === buf.length ? { variants } : undefined
}

/** Seconds Redis keeps an entry: the longest freshness left among its variants, plus {@link STALE_RETENTION_S}. */
function expirySeconds(entry: StoreEntry): number {
  let ms = 0
  for (const v of entry.variants) ms = Math.max(ms, CachePolicy.fromObject(v.policy).timeToLive())
  return Math.ceil(ms / 1000) + STALE_RETENTION_S
}

/** The URL with its password replaced by `***`, for logs and the admin API. */
function redactedUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return url
  }
}

/** Memory first, Redis second (see the module note). `size` and `count` are the memory tier's. */
export class TieredStore implements CacheStore {
  readonly memory: MemoryStore
  readonly config: RedisTierConfig
  readonly #stats: RedisTierStats
  #client: RedisClientLike | null = null
  #closed = false

  /**
   * Starts connecting at once, in the background: requests are served from memory and the
   * upstream until Redis is ready.
   *
   * @param createClient makes the node-redis client (tests may pass their own); default
   *   node-redis's base `RedisClient`, loaded on first use
   */
  constructor(memory: MemoryStore, config: RedisTierConfig, createClient?: (url: string) => RedisClientLike) {
    this.memory = memory
    this.config = config
    this.#stats = { url: redactedUrl(config.url), available: false, hits: 0, misses: 0, writes: 0, errors: 0, timeouts: 0 }
    void this.#start(createClient)
  }

  async #start(createClient?: (url: string) => RedisClientLike): Promise<void> {
    try {
      const make = createClient ?? await defaultClientFactory(this.config.timeout)
      if (this.#closed) return
      const client = make(this.config.url)
      this.#client = client
      client.on('ready', () => this.#setAvailable(true, undefined))
      client.on('end', () => this.#setAvailable(false, undefined))
      client.on('reconnecting', () => this.#setAvailable(false, undefined))
      // node-redis throws an 'error' without a listener; the state change is what gets logged.
      client.on('error', (err) => this.#setAvailable(false, err as Error))
      await client.connect()
    } catch (err) {
      // node-redis goes on reconnecting after a failed first connect; a client that could
      // not even be made (node-redis missing) leaves the tier off for good. Either way: say so.
      this.#stats.available = false
      logger.warn({ redis: this.#stats.url, err: (err as Error).message }, 'cache: Redis tier unavailable; serving from memory and upstreams')
    }
  }

  #setAvailable(up: boolean, err: Error | undefined): void {
    if (this.#stats.available === up) return
    this.#stats.available = up
    if (up) logger.info({ redis: this.#stats.url }, 'cache: Redis tier available')
    else logger.warn({ redis: this.#stats.url, err: err?.message }, 'cache: Redis tier unavailable; serving from memory and upstreams')
  }

  /** The tier's state and counts now. */
  get redis(): Readonly<RedisTierStats> {
    return this.#stats
  }

  get size(): number {
    return this.memory.size
  }

  get count(): number {
    return this.memory.count
  }

  /** The client when commands may be sent now, else null (no wait on a connection that is down). */
  #ready(): RedisClientLike | null {
    const c = this.#client
    return c !== null && c.isReady && !this.#closed ? c : null
  }

  /** `p`'s value, or undefined when it fails or takes longer than `ms` (counted once: as a timeout, or as an error). */
  #bounded<T>(p: Promise<T>, ms = this.config.timeout): Promise<T | undefined> {
    return new Promise((resolve) => {
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        this.#stats.timeouts++
        resolve(undefined)
      }, ms)
      p.then((v) => {
        clearTimeout(timer)
        resolve(v)
      }, () => {
        clearTimeout(timer)
        if (!timedOut) this.#stats.errors++
        resolve(undefined)
      })
    })
  }

  async get(key: string): Promise<StoreEntry | undefined> {
    const inMemory = await this.memory.get(key)
    if (inMemory !== undefined) return inMemory
    const c = this.#ready()
    if (c === null) return undefined
    const buf = await this.#bounded(c.sendCommand<Buffer | null>(['GET', this.config.key_prefix + key], BUFFER_REPLIES))
    if (buf === undefined) return undefined
    if (buf === null) {
      this.#stats.misses++
      return undefined
    }
    const entry = decodeEntry(buf)
    if (entry === undefined) {
      this.#stats.errors++
      return undefined
    }
    this.#stats.hits++
    await this.memory.put(key, entry)
    return entry
  }

  async put(key: string, entry: StoreEntry): Promise<void> {
    await this.memory.put(key, entry)
    const c = this.#ready()
    if (c === null) return
    // In the background: the response is served already, and a slow Redis must not hold its store.
    if (entry.variants.length === 0) {
      void this.#bounded(c.sendCommand<number>(['DEL', this.config.key_prefix + key]))
      return
    }
    void this.#bounded(c.sendCommand<string>(['SET', this.config.key_prefix + key, encodeEntry(entry), 'EX', String(expirySeconds(entry))])).then((r) => {
      if (r !== undefined) this.#stats.writes++
    })
  }

  async delete(key: string): Promise<boolean> {
    const here = await this.memory.delete(key)
    const c = this.#ready()
    if (c === null) return here
    const n = await this.#bounded(c.sendCommand<number>(['DEL', this.config.key_prefix + key]))
    return here || (n ?? 0) > 0
  }

  async deletePrefix(prefix: string): Promise<number> {
    const here = await this.memory.deletePrefix(prefix)
    const c = this.#ready()
    if (c === null) return here
    const removeAll = async (): Promise<number> => {
      let n = 0
      // SCAN's MATCH is a glob: escape its special characters in the URL prefix.
      const match = `${(this.config.key_prefix + prefix).replace(/[*?[\]\\]/g, '\\$&')}*`
      let cursor = '0'
      do {
        const [next, keys] = await c.sendCommand<[string, string[]]>(['SCAN', cursor, 'MATCH', match, 'COUNT', '500'])
        if (keys.length > 0) n += await c.sendCommand<number>(['DEL', ...keys])
        cursor = String(next)
      } while (cursor !== '0')
      return n
    }
    return Math.max(here, (await this.#bounded(removeAll(), PURGE_TIMEOUT_MS)) ?? 0)
  }

  /** Closes the Redis connection (on stop, or when a reload drops this store). */
  async close(): Promise<void> {
    this.#closed = true
    const c = this.#client
    this.#client = null
    if (c !== null) c.destroy()
    this.#stats.available = false
  }
}

/**
 * node-redis's base `RedisClient`, loaded on first use (only processes with a Redis tier pay
 * for it). Why not `createClient`: it builds a client class with a method for each of some
 * 500 Redis commands and module commands, about 25 MB of RSS per process (measured with
 * bench/memory.ts); this tier sends four commands through `sendCommand`.
 */
async function defaultClientFactory(timeoutMs: number): Promise<(url: string) => RedisClientLike> {
  const mod = await import('redis')
  // node-redis is CommonJS: a bundle may give its exports as `default` only.
  const RedisClient = mod.RedisClient ?? mod.default.RedisClient
  return (url) => new RedisClient({
    url,
    // Fail at once while disconnected rather than queueing behind a reconnect.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: Math.max(1000, timeoutMs * 10),
      // Back off up to 2 s between attempts, for ever: Redis may come back.
      reconnectStrategy: (retries: number) => Math.min(100 * 2 ** Math.min(retries, 5), 2000),
    },
  }) as unknown as RedisClientLike
}

/**
 * The store of a `cache` config: memory alone, or memory then Redis.
 *
 * @param maxSize bytes of the memory tier (`cache.max_size`)
 */
export function createCacheStore(maxSize: number, redis: RedisTierConfig | undefined): CacheStore {
  const memory = new MemoryStore(maxSize)
  return redis === undefined ? memory : new TieredStore(memory, redis)
}
