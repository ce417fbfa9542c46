/**
 * Loopback ports for tests that start servers of their own (nginx, Portico processes): a
 * free port, and waiting until something accepts on one.
 */
import net from 'node:net'

/** A port free on 127.0.0.1 now (bound to port 0, then released). */
export async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

/**
 * Resolves once a connection to 127.0.0.1:`port` is accepted, trying every 50 ms.
 *
 * @param deadline `Date.now()` ms after which it gives up
 * @param what says what was expected there, for the error
 * @throws {Error} when nothing accepted by the deadline
 */
export async function waitListening(port: number, deadline: number, what: () => string = () => ''): Promise<void> {
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  const said = what()
  throw new Error(`nothing listens on ${port}${said ? `: ${said}` : ''}`)
}
