/**
 * 'connect-timeout': a listener whose accept queue is full, so new TCP connects on
 * loopback neither complete nor fail (Linux drops SYNs to a full queue), reproducing a
 * firewall drop or a saturated upstream without leaving the machine.
 */
import net from 'node:net'
import { Worker } from 'node:worker_threads'

/**
 * Listen backlog of the blocked listener. Linux queues backlog + 1 connections; 0 is not
 * usable because Node replaces a 0 backlog with its default of 511.
 */
const BACKLOG = 1

/**
 * The worker: listens, reports its port, then blocks its event loop on an Atomics.wait
 * so libuv never accepts; a non-zero flag wakes it to close and exit.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const net = require('node:net')
const flag = new Int32Array(workerData.flag)
const server = net.createServer()
server.on('error', (err) => parentPort.postMessage({ error: err.message, code: err.code }))
server.listen({ host: workerData.host, port: workerData.port, backlog: workerData.backlog }, () => {
  parentPort.postMessage({ port: server.address().port })
  setImmediate(() => {
    while (Atomics.load(flag, 0) === 0) Atomics.wait(flag, 0, 0, 1000)
    server.close()
    process.exit(0)
  })
})
`

/** A listener with a full accept queue. */
export interface FullBacklog {
  port: number
  /** Wakes the worker, which closes the listener and exits; destroys the sockets filling the queue. */
  release(): Promise<void>
}

/** How long a probe connect may take before the queue counts as full, in ms. */
const PROBE_MS = 100
/** Most connections used to fill the queue (guards against a kernel that queues more than backlog + 1). */
const MAX_FILLERS = 16

/**
 * Starts the blocked listener and fills its accept queue: backlog + 1 connections, then
 * more until one does not complete within 100 ms.
 *
 * @throws the listen error (e.g. `EADDRINUSE`, code kept) or an Error when the queue never fills
 */
export async function fullBacklog(host: string, port: number): Promise<FullBacklog> {
  const flag = new SharedArrayBuffer(4)
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { flag, host, port, backlog: BACKLOG } })
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  const fillers: net.Socket[] = []
  const release = async (): Promise<void> => {
    for (const s of fillers) s.destroy()
    const view = new Int32Array(flag)
    Atomics.store(view, 0, 1)
    Atomics.notify(view, 0)
    await exited
  }
  const bound = await new Promise<number>((resolve, reject) => {
    worker.once('error', reject)
    worker.once('message', (m: { port?: number; error?: string; code?: string }) => {
      if (m.port !== undefined) return resolve(m.port)
      reject(Object.assign(new Error(`connect-timeout listener: ${m.error}`), { code: m.code }))
    })
  }).catch(async (err: unknown) => {
    await release()
    throw err
  })
  for (let i = 0; i < MAX_FILLERS; i++) {
    const socket = net.connect({ host, port: bound })
    socket.on('error', () => {})
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), i <= BACKLOG ? 2000 : PROBE_MS)
      socket.once('connect', () => {
        clearTimeout(t)
        resolve(true)
      })
    })
    if (!connected) {
      socket.destroy()
      if (i > BACKLOG) return { port: bound, release }
      break
    }
    fillers.push(socket)
  }
  await release()
  throw new Error('connect-timeout: the accept queue did not fill up; new connects still complete')
}
