/**
 * The balancer interface: one selection algorithm a file, all picking among the
 * endpoints that are currently eligible.
 */
import type { Endpoint } from '../endpoint.ts'

/** Selects one endpoint for a request. */
export interface Balancer {
  /**
   * Picks an endpoint among `candidates` (never empty), all eligible for this try.
   *
   * @returns one of `candidates`
   */
  pick(candidates: readonly Endpoint[]): Endpoint
}
