/**
 * Smooth weighted round robin (nginx's `ngx_http_upstream_round_robin` algorithm): each
 * pick adds every candidate's weight to its current score, takes the highest, and
 * subtracts the total from the winner, so weights 5:1:1 give a a b a c a a, not a a a a a b c.
 */
import type { Endpoint } from '../endpoint.ts'
import type { Balancer } from './balancer.ts'

export class RoundRobinBalancer implements Balancer {
  /** Current score per endpoint (nginx `current_weight`); weak, so endpoints that left the pool (a name's old addresses) are not kept. */
  readonly #current = new WeakMap<Endpoint, number>()

  pick(candidates: readonly Endpoint[]): Endpoint {
    if (candidates.length === 1) return candidates[0]
    let total = 0
    let best = candidates[0]
    let bestScore = -Infinity
    for (const e of candidates) {
      const score = (this.#current.get(e) ?? 0) + e.weight
      this.#current.set(e, score)
      total += e.weight
      if (score > bestScore) {
        best = e
        bestScore = score
      }
    }
    this.#current.set(best, bestScore - total)
    return best
  }
}
