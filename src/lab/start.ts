/**
 * startLab: builds the server of one fault mode, binds it on loopback and returns its handle.
 */
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import net from 'node:net'
import { fullBacklog } from './backlog.ts'
import { assertLoopback, authority, closeServer, LabContext, labServer, listenLoopback } from './context.ts'
import { keepAliveRaceServer } from './keepalive.ts'
import { okHandler, type Handler } from './ok.ts'
import * as raw from './raw.ts'
import { DEFAULT_LATENCY, slowBodyHandler, slowHandler } from './slow.ts'
import { tlsServer } from './tls.ts'
import type { FaultMode, LabOptions, LabServer } from './types.ts'

/** Defaults of {@link LabOptions}. */
export const LAB_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  headerBytes: 64 * 1024,
  keepAliveTimeoutMs: 200,
  chunkIntervalMs: 100,
  slowBodyBytes: 8 * 1024,
  midBodyBytes: 1024 * 1024,
})

/**
 * Starts a lab server that reproduces `mode` (see {@link FaultMode}) on loopback.
 *
 * @example
 *   const lab = await startLab('reset-before-header')
 *   // point a proxy at lab.url; expect Proxy-Status error=connection_terminated
 *   await lab.close()
 * @throws {LabHostError} (code `ERR_LAB_HOST_NOT_LOOPBACK`) when `options.host` is not loopback
 * @throws {RangeError} for an unknown mode or an invalid option
 * @throws the listen error (e.g. `EADDRINUSE`) when `options.port` is taken
 */
export async function startLab(mode: FaultMode, options: LabOptions = {}): Promise<LabServer> {
  const host = options.host ?? LAB_DEFAULTS.host
  const port = options.port ?? 0
  assertLoopback(host)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`invalid port ${port}: expected 0-65535`)
  const context = new LabContext()

  if (mode === 'dns-invalid') {
    // RFC 6761 §6.4: .invalid never resolves, so no packet leaves for this name's server.
    const name = `portico-lab-${randomBytes(6).toString('hex')}.invalid`
    return labServer({ mode, url: `http://${name}:80`, host: name, port: 80, context, release: async () => {} })
  }
  if (mode === 'refuse') {
    const bound = port !== 0 ? port : await deadPort(host)
    return labServer({ mode, url: `http://${authority(host, bound)}`, host, port: bound, context, release: async () => {} })
  }
  if (mode === 'connect-timeout') {
    const backlog = await fullBacklog(host, port)
    return labServer({ mode, url: `http://${authority(host, backlog.port)}`, host, port: backlog.port, context, release: backlog.release })
  }

  // The name defaults to `${mode}-${port}`, and the port is known only after binding.
  let name = options.name ?? mode
  let handler: Handler | undefined
  const ok: Handler = (req, res) => (handler ??= okHandler(name, context))(req, res)
  const server = createServer(mode, options, ok, context)
  if (server instanceof http.Server) server.on('request', () => context.requests++)
  const bound = await listenLoopback(server, context, host, port)
  name = options.name ?? `${mode}-${bound}`
  const scheme = mode === 'plain-behind-https' ? 'https' : 'http'
  return labServer({ mode, url: `${scheme}://${authority(host, bound)}`, host, port: bound, context, release: () => closeServer(server) })
}

function createServer(mode: FaultMode, options: LabOptions, ok: Handler, context: LabContext): net.Server {
  const size = (value: number | undefined, fallback: number, field: string): number => {
    const v = value ?? fallback
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`invalid ${field} ${v}: expected a whole number >= 0`)
    return v
  }
  switch (mode) {
    case 'ok':
    case 'plain-behind-https':
      // Node's defaults, pinned: keep-alive on, idle connections closed after 5 s.
      return http.createServer({ keepAliveTimeout: 5000 }, ok)
    case 'hang':
      return raw.rawServer(context, raw.hang)
    case 'reset-before-header':
      return raw.rawServer(context, raw.resetBeforeHeader)
    case 'close-before-header':
      return raw.rawServer(context, raw.closeBeforeHeader)
    case 'garbage':
      return raw.rawServer(context, raw.garbage)
    case 'big-header':
      return raw.rawServer(context, raw.bigHeader(size(options.headerBytes, LAB_DEFAULTS.headerBytes, 'headerBytes')))
    case 'reset-mid-body':
      return raw.rawServer(context, raw.resetMidBody(size(options.bodyBytes, LAB_DEFAULTS.midBodyBytes, 'bodyBytes')))
    case 'idle-mid-body':
      return raw.rawServer(context, raw.idleMidBody(size(options.bodyBytes, LAB_DEFAULTS.midBodyBytes, 'bodyBytes')))
    case 'slow':
      return http.createServer(slowHandler(options.latencyMs ?? DEFAULT_LATENCY, ok, context))
    case 'slow-body':
      return http.createServer(slowBodyHandler(
        size(options.bodyBytes, LAB_DEFAULTS.slowBodyBytes, 'bodyBytes'),
        size(options.chunkIntervalMs, LAB_DEFAULTS.chunkIntervalMs, 'chunkIntervalMs'),
        context,
      ))
    case 'keepalive-race':
      return keepAliveRaceServer(ok, size(options.keepAliveTimeoutMs, LAB_DEFAULTS.keepAliveTimeoutMs, 'keepAliveTimeoutMs'), options.advertiseKeepAlive ?? false, context)
    case 'tls':
      return tlsServer(ok, context)
    default:
      throw new RangeError(`unknown lab mode "${String(mode)}"`)
  }
}

/** A port nothing listens on: bound on port 0, noted, closed (Caddy's "real dead port"). */
async function deadPort(host: string): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port: 0 }, () => resolve())
  })
  const { port } = server.address() as net.AddressInfo
  await closeServer(server)
  return port
}
