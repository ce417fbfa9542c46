/**
 * DNS re-resolution of endpoints given by host name: every address a name resolves to
 * becomes an endpoint, re-resolved when its TTL runs out (nginx resolving once at start
 * is a classic cause of 502s after a backend moves).
 */
import dns from 'node:dns'
import net from 'node:net'
import type { CauseType } from '../failures/causes.ts'
import { classify } from '../failures/classify.ts'

/** Re-resolution bounds, in ms. */
export interface DnsSettings {
  /** Shortest interval between resolutions, whatever the TTL says. */
  minTtlMs: number
  /** Longest interval between resolutions, whatever the TTL says. */
  maxTtlMs: number
  /** How long the last good addresses are kept once the name stops resolving. */
  graceMs: number
}

/** One resolution: the addresses (IPv4 first) and the smallest TTL among them, in ms. */
export interface Resolution {
  addresses: string[]
  ttlMs: number
}

/** Something that resolves names; `dns.promises.Resolver` and test resolvers fit. */
export interface NameResolver {
  resolve4(host: string, options: { ttl: true }): Promise<{ address: string; ttl: number }[]>
  resolve6(host: string, options: { ttl: true }): Promise<{ address: string; ttl: number }[]>
  /** Cancels the queries under way (they fail with `ECANCELLED`), if the resolver can. */
  cancel?(): void
}

/** getaddrinfo-style lookup of every address of a name (files such as /etc/hosts, then DNS). */
export type LookupAll = (host: string) => Promise<string[]>

/** `dns.lookup` with all addresses, IPv4 first. */
export const systemLookup: LookupAll = async (host) =>
  (await dns.promises.lookup(host, { all: true, order: 'ipv4first' })).map((a) => a.address)

/**
 * Resolves a name through the DNS resolver (A and AAAA with TTLs). Names the DNS does not
 * know (such as those in /etc/hosts, like `localhost`) fall back to `dns.lookup`, what
 * most programs use, with `fallbackTtlMs` as their TTL. Names under `.invalid` fail at once
 * with `ENOTFOUND` without asking anyone (RFC 6761 §6.4).
 *
 * @throws the resolver's error (code `ENOTFOUND`, `ESERVFAIL`, `ETIMEOUT`, ...) when neither way resolves
 */
export async function resolveName(resolver: NameResolver, host: string, fallbackTtlMs: number, lookup: LookupAll | null = systemLookup): Promise<Resolution> {
  // RFC 6761 §6.4: resolver APIs answer names under .invalid with NXDOMAIN at once, asking no server.
  if (/(^|\.)invalid\.?$/i.test(host)) throw Object.assign(new Error(`queryA ENOTFOUND ${host}`), { code: 'ENOTFOUND', hostname: host })
  const [a, aaaa] = await Promise.allSettled([resolver.resolve4(host, { ttl: true }), resolver.resolve6(host, { ttl: true })])
  const records = [...(a.status === 'fulfilled' ? a.value : []), ...(aaaa.status === 'fulfilled' ? aaaa.value : [])]
  if (records.length > 0) {
    return { addresses: records.map((r) => r.address), ttlMs: Math.min(...records.map((r) => r.ttl)) * 1000 }
  }
  try {
    const found = lookup === null ? [] : await lookup(host)
    if (found.length > 0) return { addresses: found, ttlMs: fallbackTtlMs }
  } catch {
    // The resolver's own error says more (SERVFAIL, timeout) than getaddrinfo's.
  }
  throw a.status === 'rejected' ? a.reason : aaaa.status === 'rejected' ? aaaa.reason : Object.assign(new Error(`${host} has no A or AAAA record`), { code: 'ENODATA' })
}

/** What a watcher reports after each resolution. */
export interface NameUpdate {
  /** Addresses to use now: the latest good ones (possibly kept through the grace period), or empty. */
  addresses: string[]
  /** Set when the latest resolution failed: the RFC 9209 type and the reason. */
  error: { type: CauseType; detail: string } | null
  /** Whether `addresses` differ from the previous update. */
  changed: boolean
}

/**
 * Keeps one host name resolved: resolves now, then again when the TTL (clamped to
 * [minTtl, maxTtl]) runs out. A name that stops resolving keeps its last good addresses
 * for the grace period, reporting `dns_error` (or `dns_timeout`) meanwhile.
 */
export class NameWatcher {
  readonly host: string
  readonly #settings: DnsSettings
  readonly #resolver: NameResolver
  readonly #lookup: LookupAll | null
  readonly #onUpdate: (u: NameUpdate) => void
  #addresses: string[] = []
  #lastGoodAt = 0
  #ttlMs: number | null = null
  #nextAt: number | null = null
  #error: NameUpdate['error'] = null
  #timer: NodeJS.Timeout | null = null
  #stopped = false

  /**
   * @param host the name to resolve (not an IP literal)
   * @param onUpdate called after every resolution
   * @param lookup fallback for names the DNS does not know (/etc/hosts); null for none
   */
  constructor(host: string, settings: DnsSettings, resolver: NameResolver, onUpdate: (u: NameUpdate) => void, lookup: LookupAll | null = systemLookup) {
    this.host = host
    this.#settings = settings
    this.#resolver = resolver
    this.#lookup = lookup
    this.#onUpdate = onUpdate
  }

  /** The addresses in use. */
  get addresses(): readonly string[] {
    return this.#addresses
  }

  /** Epoch ms of the last resolution that succeeded; 0 before any. */
  get resolvedAt(): number {
    return this.#lastGoodAt
  }

  /** TTL of the last good answer in ms, before clamping (the fallback TTL for /etc/hosts names); null before any. */
  get ttlMs(): number | null {
    return this.#ttlMs
  }

  /** Epoch ms when the next resolution starts; null while one runs and after stop(). */
  get nextAt(): number | null {
    return this.#nextAt
  }

  /** The error of the latest resolution (RFC 9209 type and reason), or null when it succeeded. */
  get error(): NameUpdate['error'] {
    return this.#error
  }

  /** Resolves once now and keeps resolving; resolves when the first resolution is done. */
  async start(): Promise<void> {
    await this.#refresh()
  }

  /** Stops re-resolving. */
  stop(): void {
    this.#stopped = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#nextAt = null
  }

  async #refresh(): Promise<void> {
    this.#nextAt = null
    const s = this.#settings
    let next = s.minTtlMs
    let update: NameUpdate
    try {
      const r = await resolveName(this.#resolver, this.host, s.minTtlMs, this.#lookup)
      const sorted = [...new Set(r.addresses)].sort()
      const changed = sorted.join() !== this.#addresses.join()
      this.#addresses = sorted
      this.#lastGoodAt = Date.now()
      this.#ttlMs = r.ttlMs
      next = Math.min(s.maxTtlMs, Math.max(s.minTtlMs, r.ttlMs))
      update = { addresses: sorted, error: null, changed }
    } catch (err) {
      const c = classify(err, 'connect')
      const type: CauseType = c.type === 'dns_timeout' ? 'dns_timeout' : 'dns_error'
      const expired = this.#addresses.length > 0 && Date.now() - this.#lastGoodAt > s.graceMs
      const changed = expired
      if (expired) this.#addresses = []
      update = { addresses: this.#addresses, error: { type, detail: `${this.host}: ${c.detail}` }, changed }
    }
    if (this.#stopped) return
    this.#error = update.error
    this.#nextAt = Date.now() + next
    this.#timer = setTimeout(() => { void this.#refresh() }, next)
    this.#timer.unref()
    this.#onUpdate(update)
  }
}

/** Whether an endpoint host needs resolving (a name, not an IP literal). */
export function isHostName(host: string): boolean {
  return net.isIP(host) === 0
}

/**
 * Whether a pool resolves an endpoint host itself and follows its changes: a name that is
 * neither an IP literal nor a localhost name. `localhost` and `*.localhost` are loopback
 * by definition (RFC 6761 §6.3) and are left to getaddrinfo at connect time, as before.
 */
export function isWatchedName(host: string): boolean {
  return isHostName(host) && !/(^|\.)localhost\.?$/i.test(host)
}

/** A resolver asking the given servers (`host:port`), or the system's when none are given. */
export function createResolver(servers: readonly string[] | undefined, timeoutMs: number): dns.promises.Resolver {
  const r = new dns.promises.Resolver({ timeout: timeoutMs, tries: 2 })
  if (servers && servers.length > 0) r.setServers([...servers])
  return r
}
