/**
 * Least request with the power of two choices (Envoy's `LEAST_REQUEST`): draw two
 * candidates at random (by weight) and take the one with fewer requests in flight,
 * weighted as in-flight / weight. Cheap, and avoids herding onto one idle endpoint.
 */
import type { Endpoint } from '../endpoint.ts'
import type { Balancer } from './balancer.ts'
import { weightedRandom } from './random.ts'

export class LeastRequestBalancer implements Balancer {
  readonly #random: () => number

  /** @param random source of uniform numbers in [0, 1); injectable for tests */
  constructor(random: () => number = Math.random) {
    this.#random = random
  }

  pick(candidates: readonly Endpoint[]): Endpoint {
    if (candidates.length === 1) return candidates[0]
    const a = weightedRandom(candidates, this.#random)
    let b = weightedRandom(candidates, this.#random)
    // Two distinct choices when possible: a second draw of the same endpoint wastes the comparison.
    for (let i = 0; b === a && i < 3; i++) b = weightedRandom(candidates, this.#random)
    return a.inFlight / a.weight <= b.inFlight / b.weight ? a : b
  }
}
