/**
 * Why an endpoint is out of rotation: active checks and outlier detection each hold their
 * own reason, and the endpoint shows the one that applies, so that one clearing its
 * reason never erases the other's.
 */
import type { CauseType } from '../../failures/causes.ts'
import type { Endpoint } from '../endpoint.ts'

/** One source's reason: the RFC 9209 type and the same in words. */
export interface DownReason {
  type: CauseType
  detail: string
}

/** Which part of health checking speaks. */
export type HealthSource = 'active' | 'outlier'

const held = new WeakMap<Endpoint, Record<HealthSource, DownReason | null>>()

/**
 * Records `source`'s reason for `endpoint` (null clears it) and updates
 * `endpoint.downReason` / `downDetail`: the active check's reason while the endpoint is
 * unhealthy, else the outlier reason while it is ejected, else null.
 *
 * @param now epoch ms, to tell whether an ejection is still running
 */
export function setDownReason(endpoint: Endpoint, source: HealthSource, reason: DownReason | null, now = Date.now()): void {
  let r = held.get(endpoint)
  if (r === undefined) held.set(endpoint, (r = { active: null, outlier: null }))
  r[source] = reason
  const shown = (!endpoint.healthy ? r.active : null) ?? (endpoint.ejectedUntil > now ? r.outlier : null)
  endpoint.downReason = shown?.type ?? null
  endpoint.downDetail = shown?.detail ?? null
}
