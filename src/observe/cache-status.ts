/**
 * The cache's `Cache-Status` member (RFC 9211) and what it says about how a request was
 * answered, for metrics.
 */

/**
 * This cache's `Cache-Status` member (RFC 9211 §2): the cache's name, then its parameters.
 *
 * @param name the proxy name (`proxy_name`)
 * @param params the parameters, e.g. `hit; ttl=60` or `fwd=uri-miss; fwd-status=200; stored`
 */
export function cacheStatus(name: string, params: string): string {
  return `${name}; ${params}`
}

/**
 * How the cache answered a request:
 * - `hit`: from the store, fresh;
 * - `stale`: from the store, stale (`stale-while-revalidate`, or instead of an error);
 * - `revalidated`: from the store after the origin confirmed it (a 304, or a 200 to HEAD);
 * - `miss`: the response came from the origin (nothing stored, no matching variant, or a
 *   stored response replaced by a new one);
 * - `bypass`: a method the cache does not serve (POST, PUT, ...).
 */
export type CacheResult = 'hit' | 'stale' | 'revalidated' | 'miss' | 'bypass'

/**
 * Classifies a `Cache-Status` member made with {@link cacheStatus}.
 *
 * @param member one member, e.g. `portico; fwd=stale; fwd-status=304; ttl=60`
 */
export function cacheResult(member: string): CacheResult {
  const params = new Map(member.split(';').slice(1).map((p) => {
    const [k, v] = p.trim().split('=')
    return [k, v ?? ''] as const
  }))
  if (params.has('hit')) return params.get('detail') === 'stale-while-revalidate' ? 'stale' : 'hit'
  const fwd = params.get('fwd')
  if (fwd === 'method') return 'bypass'
  // A stored response served after going forward carries its ttl: freshened, or stale instead of an error.
  if (fwd === 'stale' && params.has('ttl')) {
    return params.has('detail') || Number(params.get('fwd-status')) >= 500 ? 'stale' : 'revalidated'
  }
  return 'miss'
}
