/**
 * Weighted random selection.
 */
import type { Endpoint } from '../endpoint.ts'
import type { Balancer } from './balancer.ts'

/** Draws one candidate with probability proportional to its weight. */
export function weightedRandom(candidates: readonly Endpoint[], random: () => number): Endpoint {
  let total = 0
  for (const e of candidates) total += e.weight
  let x = random() * total
  for (const e of candidates) {
    x -= e.weight
    if (x < 0) return e
  }
  return candidates[candidates.length - 1]
}

export class RandomBalancer implements Balancer {
  readonly #random: () => number

  /** @param random source of uniform numbers in [0, 1); injectable for tests */
  constructor(random: () => number = Math.random) {
    this.#random = random
  }

  pick(candidates: readonly Endpoint[]): Endpoint {
    return candidates.length === 1 ? candidates[0] : weightedRandom(candidates, this.#random)
  }
}
