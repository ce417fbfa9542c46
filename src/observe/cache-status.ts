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
  // Read on every request of a caching route (by the metrics and the live statistics):
  // the parameters are walked in place, no array or map per call.
  let hit = false
  let ttl = false
  let fwd: string | undefined
  let fwdStatus: string | undefined
  let detail: string | undefined
  for (let at = member.indexOf(';'); at !== -1;) {
    const end = member.indexOf(';', at + 1)
    const param = member.slice(at + 1, end === -1 ? member.length : end).trim()
    const eq = param.indexOf('=')
    const key = eq === -1 ? param : param.slice(0, eq)
    const value = eq === -1 ? '' : param.slice(eq + 1)
    if (key === 'hit') hit = true
    else if (key === 'ttl') ttl = true
    else if (key === 'fwd') fwd = value
    else if (key === 'fwd-status') fwdStatus = value
    else if (key === 'detail') detail = value
    at = end
  }
  if (hit) return detail === 'stale-while-revalidate' ? 'stale' : 'hit'
  if (fwd === 'method') return 'bypass'
  // A stored response served after going forward carries its ttl: freshened, or stale instead of an error.
  if (fwd === 'stale' && ttl) return detail !== undefined || Number(fwdStatus) >= 500 ? 'stale' : 'revalidated'
  return 'miss'
}
