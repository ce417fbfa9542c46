/**
 * The Node.js alternative to the nginx backend (`BENCH_BACKEND=node bash bench/run.sh`):
 * answers every request with the same 100-byte body over keep-alive, and `/healthz`
 * with "ok". `/cacheable` gets the same body with `Cache-Control: max-age=3600`, and
 * each request for it prints its Via header (or `-`) on stdout, as the nginx backend
 * logs it, so the cache scenario can count each proxy's misses.
 * Usage: `node bench/backend.ts PORT`.
 *
 * nginx is the default backend because it is the steadier one: no garbage collector
 * or JIT warm-up, and it serves several times the requests/s a Node.js process does on
 * the same core, so the proxies in front of it stay the bottleneck being measured.
 */
import { createServer } from 'node:http'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node bench/backend.ts PORT')
  process.exit(2)
}

const body = Buffer.from('Portico benchmark backend: one small fixed body so throughput measures the proxy, not the app......\n')
const ok = Buffer.from('ok\n')

const server = createServer((req, res) => {
  if (req.url === '/cacheable') {
    process.stdout.write(`${req.headers.via ?? '-'}\n`)
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'cache-control': 'max-age=3600' })
    return void res.end(body)
  }
  const payload = req.url === '/healthz' ? ok : body
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': payload.length })
  res.end(payload)
})
server.keepAliveTimeout = 75_000
server.maxRequestsPerSocket = 0
server.listen(port, '127.0.0.1')
