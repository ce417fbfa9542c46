/**
 * Test helpers that talk to lab servers at the byte level, recording what came back and how the connection ended.
 */
import net from 'node:net'

/** What a raw exchange saw. */
export interface Exchange {
  /** Every byte received. */
  bytes: Buffer
  /** 'end' (FIN), 'error' (with `code`), or 'open' when the wait ran out with the socket still open. */
  outcome: 'end' | 'error' | 'open'
  code?: string
  /** Time from sending the request to the outcome, in ms. */
  elapsedMs: number
}

/** A minimal GET request head. */
export const GET = 'GET / HTTP/1.1\r\nHost: lab\r\n\r\n'

/**
 * Connects to 127.0.0.1:`port`, sends `request`, and collects bytes until the server ends,
 * errors, or `waitMs` ms pass; the socket is destroyed before returning.
 */
export async function exchange(port: number, request: string, waitMs: number, host = '127.0.0.1'): Promise<Exchange> {
  const socket = net.connect({ host, port })
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  const t0 = performance.now()
  socket.write(request)
  const result = await new Promise<Pick<Exchange, 'outcome' | 'code'>>((resolve) => {
    const timer = setTimeout(() => resolve({ outcome: 'open' }), waitMs)
    socket.once('end', () => { clearTimeout(timer); resolve({ outcome: 'end' }) })
    socket.once('error', (err: NodeJS.ErrnoException) => { clearTimeout(timer); resolve({ outcome: 'error', code: err.code }) })
  })
  const elapsedMs = performance.now() - t0
  socket.destroy()
  return { bytes: Buffer.concat(chunks), ...result, elapsedMs }
}

/** TCP handles still open in this process (listeners and sockets). */
export function openTcpHandles(): string[] {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP') || r === 'Pipe')
}
