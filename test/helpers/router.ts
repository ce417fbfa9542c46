/**
 * A router over bare routes, for the routing tests: the routes go through the config
 * schema (defaults, compiled matchers) with an upstream defined for each.
 */
import { configSchema, type ConfigInput } from '../../src/config/schema.ts'
import { Router } from '../../src/routing/router.ts'

/** A router over `routes`, validated by the config schema (each route's upstream is defined for it). */
export function router(routes: ConfigInput['routes']): Router {
  const upstreams: ConfigInput['upstreams'] = {}
  for (const r of routes) upstreams[r.upstream] = { endpoints: ['http://127.0.0.1:1'] }
  return new Router(configSchema.parse({ listeners: [{ address: '127.0.0.1:0' }], routes, upstreams }).routes)
}
