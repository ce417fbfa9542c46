/**
 * `portico demo` (what `npm start` runs): Portico on 127.0.0.1:8080 in front of healthy and
 * faulty loopback upstreams, so a newcomer sees load balancing and classified 502/504s
 * in the first minute.
 */
import { configSchema, type Config } from '../config/schema.ts'
import { startLab, type FaultMode, type LabOptions, type LabServer } from '../lab/index.ts'
import { Gateway } from '../server/gateway.ts'
import { AdminServer } from '../admin/server.ts'
import { useTextProcessLog } from '../lib/logger.ts'

/** One demo route: a path, the lab servers behind it, and what a request there shows. */
interface DemoRoute {
  path: string
  labs: { mode: FaultMode; options?: LabOptions }[]
  shows: string
  timeouts?: { connect?: string; response_header?: string; idle?: string }
  load_balancing?: 'round_robin' | 'least_request' | 'random'
}

const ROUTES: DemoRoute[] = [
  { path: '/ok', labs: [{ mode: 'ok', options: { name: 'app-a' } }, { mode: 'ok', options: { name: 'app-b' } }, { mode: 'ok', options: { name: 'app-c' } }], shows: '200, round robin over app-a, app-b, app-c (see "server" in the body)' },
  { path: '/mixed', labs: [{ mode: 'refuse' }, { mode: 'ok', options: { name: 'app-d' } }], shows: '200 even though one endpoint refuses: the refused try is retried on the other (attempts=2 in the log)' },
  { path: '/refused', labs: [{ mode: 'refuse' }], shows: '502 connection_refused: nothing listens on the port' },
  { path: '/slow', labs: [{ mode: 'hang' }], shows: '504 http_response_timeout after 3s: the upstream never answers', timeouts: { response_header: '3s' } },
  { path: '/connect-timeout', labs: [{ mode: 'connect-timeout' }], shows: '504 connection_timeout after 1s: the TCP handshake never completes', timeouts: { connect: '1s' } },
  { path: '/reset', labs: [{ mode: 'reset-before-header' }], shows: '502 connection_terminated: the upstream resets the connection' },
  { path: '/garbage', labs: [{ mode: 'garbage' }], shows: '502 http_protocol_error: the upstream does not speak HTTP' },
  { path: '/tls', labs: [{ mode: 'tls' }], shows: '502 http_protocol_error: a TLS server addressed as http://' },
  { path: '/big-header', labs: [{ mode: 'big-header' }], shows: '502 http_response_header_section_size: 64 KiB of response headers' },
  { path: '/midbody', labs: [{ mode: 'reset-mid-body' }], shows: '200 then the connection is aborted mid-body (http_response_incomplete in the log)' },
  { path: '/dns', labs: [{ mode: 'dns-invalid' }], shows: '502 dns_error: the upstream host name (a .invalid name) never resolves, on purpose' },
]

/** Options of `portico demo`. */
export interface DemoOptions {
  listen: string
  logFormat: 'json' | 'text'
  /** Where the admin API and the dashboard listen (loopback). Default 127.0.0.1:9901. */
  admin?: string
}

/** Builds the demo config for the started lab servers. */
export function demoConfig(listen: string, logFormat: 'json' | 'text', labs: LabServer[][], admin = '127.0.0.1:9901'): Config {
  const upstreams: Record<string, unknown> = {}
  const routes = ROUTES.map((r, i) => {
    const name = r.path.slice(1)
    upstreams[name] = {
      endpoints: labs[i].map((l) => l.url),
      load_balancing: r.load_balancing ?? 'round_robin',
      timeouts: { connect: '1s', response_header: '5s', idle: '5s', ...r.timeouts },
      retries: { attempts: 2 },
    }
    return { name, match: { path_prefix: r.path }, upstream: name, strip_prefix: true }
  })
  return configSchema.parse({
    listeners: [{ address: listen }],
    routes,
    upstreams,
    access_log: { format: logFormat, path: '-' },
    admin: { address: admin },
  })
}

/**
 * Starts the demo and runs until SIGINT/SIGTERM.
 *
 * @returns the exit code: 0 after a clean stop, 1 when the listen address is taken
 */
export async function demoCommand(opts: DemoOptions): Promise<number> {
  const labs = await Promise.all(ROUTES.map((r) => Promise.all(r.labs.map((l) => startLab(l.mode, l.options)))))
  const closeLabs = () => Promise.all(labs.flat().map((l) => l.close()))
  // The /dns upstream never resolves on purpose: the guide says so, the start-up warning
  // about it would only alarm. Other process log lines come as text, after the guide.
  const invalid = new Set(labs.flat().filter((l) => l.mode === 'dns-invalid').map((l) => l.host))
  const release = opts.logFormat === 'text'
    ? useTextProcessLog({ hold: true, hide: (rec) => typeof rec.name === 'string' && invalid.has(rec.name) })
    : () => {}
  const gw = new Gateway(demoConfig(opts.listen, opts.logFormat, labs, opts.admin), { admin: (g) => new AdminServer(g) })
  try {
    await gw.start()
  } catch (err) {
    release()
    process.stderr.write(`portico demo: cannot listen on ${opts.listen} (admin ${opts.admin ?? '127.0.0.1:9901'}): ${(err as Error).message}\n(use: npm start -- --listen 127.0.0.1:8081 --admin 127.0.0.1:9902)\n`)
    await closeLabs()
    return 1
  }
  const a = gw.listeners[0].address
  const base = `http://${a.address}:${a.port}`
  const width = Math.max(...ROUTES.map((r) => r.path.length))
  const adminAddress = gw.admin?.address
  const dashboard = adminAddress ? `http://${adminAddress.address}:${adminAddress.port}/` : null
  process.stderr.write([
    '',
    `Portico demo: listening on ${base}, in front of ${labs.flat().length} loopback upstreams.`,
    'Try these (the access log of each request follows below):',
    '',
    ...ROUTES.map((r) => `  curl -i ${base}${r.path.padEnd(width)}   ${r.shows}`),
    '',
    `Every proxy-made error names its cause in the Proxy-Status header; add -H 'Accept: application/json' for a JSON error page.`,
    ...(dashboard === null ? [] : [`Dashboard (live causes, per endpoint): ${dashboard}   in a terminal: npx portico top --admin ${dashboard.slice(7, -1)}`]),
    'Diagnose a backend with: npx portico doctor --upstream <url>; list fault scenarios with: npx portico lab --list',
    'Stop with Ctrl-C.',
    '',
  ].join('\n') + '\n')
  release()
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  await gw.stop(2000)
  await closeLabs()
  return 0
}
