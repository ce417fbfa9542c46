/**
 * The filtering phase alone, in a loop: `filterRequest` with the route filter of
 * bench/conf/portico-filter.yaml (an access rule list and a local rate limit keyed by
 * client address, never refusing), for one client address. Prints the time a request.
 * Usage: `node bench/filter.ts [REQUESTS]` (default 2,000,000; one CPU-bound loop, no sockets).
 */
import { readFileSync } from 'node:fs'
import { parseConfig } from '../src/config/load.ts'
import { filterRequest, Filters, isRefused, type FilterFacts } from '../src/protect/filter.ts'

const file = new URL('conf/portico-filter.yaml', import.meta.url)
const config = parseConfig(readFileSync(file, 'utf8').replaceAll('@PORT@', '8080').replaceAll('@BACKEND@', '8081'), file.pathname)
const rf = new Filters(config, config.routes.map((r, i) => r.name ?? `route${i}`)).routes.get('default')
if (rf === undefined) throw new Error('portico-filter.yaml has no filter on its route "default"')
const facts: FilterFacts = { method: 'GET', target: '/', headers: { host: '127.0.0.1' }, clientIp: '127.0.0.1' }
const n = Number(process.argv[2] ?? 2_000_000)

function run(count: number): void {
  for (let i = 0; i < count; i++) {
    const o = filterRequest(rf!, facts)
    if (o instanceof Promise || isRefused(o)) throw new Error('a local filter that admits everything refused or went async')
  }
}

run(Math.min(n, 100_000)) // warm up the JIT
const t0 = process.hrtime.bigint()
run(n)
const ns = Number(process.hrtime.bigint() - t0)
console.log(`filterRequest: ${n} requests, ${(ns / n / 1000).toFixed(3)} µs a request`)
