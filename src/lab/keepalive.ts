/**
 * 'keepalive-race': an HTTP/1.1 server that closes idle keep-alive connections after a
 * short, unadvertised idle timeout, like many application servers. A proxy that keeps
 * the connection pooled longer sends its next request into a closing socket.
 */
import http from 'node:http'
import type net from 'node:net'
import type { LabContext } from './context.ts'
import type { Handler } from './ok.ts'

/**
 * Creates the server. Node's own keep-alive timer is turned off (it both advertises
 * `Keep-Alive: timeout=` and adds a grace buffer); instead each connection is destroyed
 * exactly `keepAliveTimeoutMs` ms after its last response finished, unless another
 * request arrived first.
 *
 * @param advertise send `Keep-Alive: timeout=<floor(keepAliveTimeoutMs / 1000)>` (seconds, RFC 9112 Appendix C.2.2 style)
 */
export function keepAliveRaceServer(inner: Handler, keepAliveTimeoutMs: number, advertise: boolean, context: LabContext): http.Server {
  const idle = new Map<net.Socket, NodeJS.Timeout>()
  const server = http.createServer({ keepAliveTimeout: 0 }, (req, res) => {
    const socket = req.socket
    context.cancel(idle.get(socket))
    idle.delete(socket)
    if (advertise && res.shouldKeepAlive) res.setHeader('keep-alive', `timeout=${Math.floor(keepAliveTimeoutMs / 1000)}`)
    res.once('finish', () => {
      if (socket.destroyed || !res.shouldKeepAlive) return
      idle.set(socket, context.after(keepAliveTimeoutMs, () => {
        idle.delete(socket)
        socket.destroy()
      }))
    })
    inner(req, res)
  })
  server.on('connection', (socket: net.Socket) => {
    socket.once('close', () => {
      context.cancel(idle.get(socket))
      idle.delete(socket)
    })
  })
  return server
}
