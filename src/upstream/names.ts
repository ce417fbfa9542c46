/**
 * The endpoints of an upstream given by host name (Envoy's `STRICT_DNS` cluster, nginx
 * `server ... resolve`): a {@link NameWatcher} keeps the name resolved, and each address it
 * returns becomes an endpoint that connects to the address while the name stays the
 * `Host` default, the TLS server name and the name the certificate must carry.
 */
import type { CauseType } from '../failures/causes.ts'
import { logger } from '../lib/logger.ts'
import { NameWatcher, type DnsSettings, type LookupAll, type NameResolver, type NameUpdate } from './dns.ts'
import type { Endpoint } from './endpoint.ts'

/** The resolution state of one host name of an upstream, for the admin API (times in epoch ms). */
export interface NameStatus {
  /** The host name. */
  name: string
  /** Addresses in use: the latest answer, or the last good one kept during the grace period. */
  addresses: string[]
  /** TTL of the last good answer in ms, before clamping to `min_ttl`/`max_ttl`; null before any. */
  ttlMs: number | null
  /** When the name last resolved; null before it ever did. */
  resolvedAt: number | null
  /** When the next resolution starts; null while one runs. */
  nextAt: number | null
  /** Why the latest resolution failed (`dns_error` or `dns_timeout`); null when it succeeded or none has finished. */
  reason: CauseType | null
  /** The same reason in words (the resolver's error code and the name); null when none. */
  reasonDetail: string | null
  /** While the name fails with addresses kept: when the grace period ends and they are dropped; else null. */
  graceUntil: number | null
  /** Whether the first resolution is still running. */
  resolving: boolean
  /** The latest failed resolution, kept after the name resolves again; null when none failed. */
  lastError: { type: CauseType; at: number; detail: string } | null
}

/** What a {@link NameEndpoints} needs from its pool. */
export interface NameHost {
  /** Upstream name, for the log. */
  readonly upstream: string
  /** Builds the endpoint of configured URL `url` at `address`. */
  make(url: string, weight: number, address: string): Endpoint
  /** Called after the addresses changed, with the endpoints that joined and those that left. */
  changed(added: Endpoint[], removed: Endpoint[]): void
}

/** One configured endpoint (`url`, `weight`) whose host is the name: its endpoints by address. */
interface NameSlot {
  readonly url: string
  readonly weight: number
  readonly byAddress: Map<string, Endpoint>
}

/**
 * One host name of an upstream and the endpoints made from its addresses. Every configured
 * endpoint with this host (several may differ in port or weight) gets one endpoint per address.
 *
 * Changes are logged once each on the process log, with `upstream` and `name`: the addresses
 * (`addresses_before`, `addresses`, `ttl_ms`; info, or warn when the grace period ran out and
 * none are left), the name starting to fail (`reason`, `detail`; warn) and resolving again (info).
 */
export class NameEndpoints {
  readonly host: string
  readonly #slots: NameSlot[] = []
  readonly #watcher: NameWatcher
  readonly #settings: DnsSettings
  readonly #host: NameHost
  #addresses: string[] = []
  #resolving = true
  /** The latest update's error, so each start and end of a failure is logged once. */
  #error: NameUpdate['error'] = null
  #lastError: NameStatus['lastError'] = null
  /** Settles when the first resolution is over, whatever its outcome. */
  readonly started: Promise<void>

  /**
   * Starts resolving at once; {@link started} settles after the first answer.
   *
   * @param lookup getaddrinfo fallback for names the DNS does not know; null for none
   */
  constructor(host: string, settings: DnsSettings, resolver: NameResolver, lookup: LookupAll | null, pool: NameHost) {
    this.host = host
    this.#settings = settings
    this.#host = pool
    this.#watcher = new NameWatcher(host, settings, resolver, (u) => this.#update(u), lookup)
    this.started = this.#watcher.start()
  }

  /**
   * Adds a configured endpoint with this host.
   *
   * @returns its index, for {@link endpointsOf}
   */
  addSlot(url: string, weight: number): number {
    return this.#slots.push({ url, weight, byAddress: new Map() }) - 1
  }

  /** The endpoints of configured endpoint `slot`, in address order. */
  endpointsOf(slot: number): Endpoint[] {
    return [...this.#slots[slot].byAddress.values()]
  }

  /** The current state, for the admin API. */
  status(): NameStatus {
    const w = this.#watcher
    const error = w.error
    return {
      name: this.host,
      addresses: [...this.#addresses],
      ttlMs: w.ttlMs,
      resolvedAt: w.resolvedAt > 0 ? w.resolvedAt : null,
      nextAt: w.nextAt,
      reason: error?.type ?? null,
      reasonDetail: error?.detail ?? null,
      graceUntil: error !== null && this.#addresses.length > 0 ? w.resolvedAt + this.#settings.graceMs : null,
      resolving: this.#resolving,
      lastError: this.#lastError && { ...this.#lastError },
    }
  }

  /** Stops re-resolving; the endpoints stay until the pool closes them. */
  stop(): void {
    this.#watcher.stop()
  }

  /** Applies one resolution; never throws (it runs on the watcher's timer). */
  #update(u: NameUpdate): void {
    try {
      const before = this.#addresses
      const previous = this.#error
      this.#error = u.error
      this.#resolving = false
      if (u.error !== null) this.#lastError = { type: u.error.type, at: Date.now(), detail: u.error.detail }
      if (u.changed) this.#apply(before, u)
      this.#logError(previous, u)
    } catch (err) {
      logger.error({ err, upstream: this.#host.upstream, name: this.host }, `upstream ${this.#host.upstream}: applying the addresses of ${this.host} failed: ${(err as Error).message}`)
    }
  }

  /** Makes endpoints for new addresses, takes away those of gone ones, and logs the change. */
  #apply(before: string[], u: NameUpdate): void {
    const next = new Set(u.addresses)
    const added: Endpoint[] = []
    const removed: Endpoint[] = []
    for (const slot of this.#slots) {
      for (const [address, ep] of slot.byAddress) {
        if (next.has(address)) continue
        slot.byAddress.delete(address)
        removed.push(ep)
      }
      for (const address of u.addresses) {
        if (slot.byAddress.has(address)) continue
        const ep = this.#host.make(slot.url, slot.weight, address)
        slot.byAddress.set(address, ep)
        added.push(ep)
      }
      // Address order, so the endpoint list reads the same whatever the order of arrival.
      const sorted = [...slot.byAddress].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      slot.byAddress.clear()
      for (const [a, ep] of sorted) slot.byAddress.set(a, ep)
    }
    this.#addresses = [...u.addresses]
    this.#host.changed(added, removed)
    const upstream = this.#host.upstream
    const ttl = this.#watcher.ttlMs
    const fields = { upstream, name: this.host, addresses_before: before, addresses: this.#addresses, ttl_ms: u.error === null ? ttl : null }
    const was = before.length > 0 ? before.join(', ') : 'none'
    if (this.#addresses.length === 0) {
      logger.warn({ ...fields, reason: u.error?.type ?? null, detail: u.error?.detail ?? null },
        `upstream ${upstream}: ${this.host} still does not resolve after the grace period of ${this.#settings.graceMs}ms; dropped ${was}`)
    } else {
      logger.info(fields, `upstream ${upstream}: ${this.host} resolves to ${this.#addresses.join(', ')} (was ${was}), ttl ${ttl}ms`)
    }
  }

  /** Logs a failure when it starts (or its type changes) and when it ends. */
  #logError(previous: NameUpdate['error'], u: NameUpdate): void {
    const upstream = this.#host.upstream
    if (u.error !== null && previous?.type !== u.error.type) {
      const kept = this.#addresses.length > 0
        ? `keeping ${this.#addresses.join(', ')} for up to ${this.#settings.graceMs}ms`
        : `requests get ${u.error.type} until it resolves`
      logger.warn({ upstream, name: this.host, reason: u.error.type, detail: u.error.detail, addresses: this.#addresses },
        `upstream ${upstream}: ${this.host} does not resolve (${u.error.type}: ${u.error.detail}); ${kept}`)
    } else if (u.error === null && previous !== null) {
      logger.info({ upstream, name: this.host, reason: null, addresses: this.#addresses }, `upstream ${upstream}: ${this.host} resolves again`)
    }
  }
}
