/**
 * Rate-limit TATs in Redis (`scope: redis`): one limit for a fleet of Portico hosts. The
 * GCRA step of src/protect/rate-limit.ts runs as one Lua script, atomic in Redis, on
 * Redis's clock (`TIME`), so hosts with skewed clocks share one timeline. Redis is never
 * required for serving: a command that fails or outlasts `timeout` rejects, and the
 * caller applies `on_store_error`; while the connection is down, commands fail at once
 * (no offline queue) and node-redis reconnects in the background.
 */
import { createRequire } from 'node:module'
import type { createClient } from 'redis'
import { nodeCrypto } from '../lib/lazy-builtins.ts'
import { logger } from '../lib/logger.ts'
import type { GcraPolicy, LimitDecision, RateLimitStore } from './rate-limit.ts'

/**
 * GCRA in Redis. KEYS[1]: the key; ARGV: interval and burst × interval, in µs. Returns
 * `{allowed 0|1, remaining, reset µs, retry-after µs}`. Integers only: Redis truncates Lua
 * numbers in replies. The TAT expires when it has passed (an expired key is a fresh one).
 */
const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local nxt = tat + interval
local allow_at = nxt - tolerance - interval
if now < allow_at then
  return {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000))
return {1, math.floor((now - allow_at) / interval), math.ceil(nxt - now), 0}
`
let scriptSha: string | undefined
/** The script's SHA-1 (`EVALSHA`), made on first use: node:crypto loads only where Redis is used. */
const SCRIPT_SHA = (): string => (scriptSha ??= nodeCrypto().createHash('sha1').update(SCRIPT).digest('hex'))

// node-redis is loaded by the first RedisStore (require is synchronous): a process without
// `scope: redis` limits never loads it (some 500 modules, 30 MB and more of RSS).
const requirePackage = createRequire(import.meta.url)

/** Settings of the Redis connection (`redis` of portico.yaml). */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`. */
  url: string
  /** Longest wait for one command, in ms; also the connect timeout. */
  timeoutMs: number
  /** Prefix of every key Portico writes. */
  keyPrefix: string
}

/** A rate-limit store on one Redis connection, shared by every `redis` limit of a runtime. */
export class RedisStore implements RateLimitStore {
  readonly options: RedisStoreOptions
  readonly #client: ReturnType<typeof createClient>
  #loaded = false
  #closed = false
  /** Commands that failed or timed out since start. */
  errors = 0

  constructor(options: RedisStoreOptions) {
    this.options = options
    const { createClient: create } = requirePackage('redis') as { createClient: typeof createClient }
    this.#client = create({
      url: options.url,
      disableOfflineQueue: true,
      socket: {
        connectTimeout: options.timeoutMs,
        // Retry forever, at most once a second: a Redis that comes back is used again.
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000),
      },
      commandOptions: { timeout: options.timeoutMs, rejectInFlight: true },
    })
    // Errors are reported through the failed commands (counted, logged by the caller); node-redis also emits them here.
    this.#client.on('error', () => {})
    this.#client.connect().catch(() => {})
  }

  /** Whether the connection is up now. */
  get ready(): boolean {
    return this.#client.isReady
  }

  take(key: string, policy: GcraPolicy): Promise<LimitDecision> {
    if (!this.#client.isReady) return Promise.reject(new Error(`redis ${this.options.url} is not connected`))
    return this.#take(this.options.keyPrefix + key, policy)
  }

  async #take(key: string, policy: GcraPolicy): Promise<LimitDecision> {
    const args = [String(Math.round(policy.intervalMs * 1000)), String(Math.round(policy.burst * policy.intervalMs * 1000))]
    let reply: unknown
    try {
      reply = this.#loaded
        ? await this.#client.evalSha(SCRIPT_SHA(), { keys: [key], arguments: args })
        : await this.#client.eval(SCRIPT, { keys: [key], arguments: args })
      this.#loaded = true
    } catch (err) {
      // A restarted Redis has forgotten the script: load it again with the next call.
      if (/NOSCRIPT/.test((err as Error).message)) this.#loaded = false
      throw err
    }
    const r = reply as number[]
    return { allowed: r[0] === 1, remaining: r[1], resetMs: r[2] / 1000, retryAfterMs: r[3] / 1000 }
  }

  /** Closes the connection; pending commands reject. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    try {
      if (this.#client.isOpen) await this.#client.close()
      else this.#client.destroy()
    } catch (err) {
      logger.debug({ err: (err as Error).message }, 'redis close failed')
    }
  }
}
