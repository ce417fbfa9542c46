/**
 * 'keepalive-race' closes idle keep-alive connections on its own short timer, advertised only on request.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import type net from 'node:net'
import { after, test } from 'node:test'
import { startLab, type LabOptions, type LabServer } from '../../src/lab/index.ts'

const labs: LabServer[] = []
after(() => Promise.all(labs.map((l) => l.close())))

/**
 * One keep-alive request; resolves with the response headers and when the server closed
 * the connection: `sinceRequestMs` from sending the request (a lower bound of the server's
 * idle time, whatever the load) and `closedAfterMs` from reading the response end (an upper bound).
 */
async function idleClose(options: LabOptions): Promise<{ headers: http.IncomingHttpHeaders; closedAfterMs: number; sinceRequestMs: number; lab: LabServer }> {
  const lab = await startLab('keepalive-race', options)
  labs.push(lab)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  try {
    let socket: net.Socket | undefined
    const sentAt = performance.now()
    const { headers, endedAt } = await new Promise<{ headers: http.IncomingHttpHeaders; endedAt: number }>((resolve, reject) => {
      const req = http.get(lab.url, { agent }, (res) => {
        socket = res.socket
        res.resume()
        res.on('end', () => resolve({ headers: res.headers, endedAt: performance.now() }))
      })
      req.on('error', reject)
    })
    assert.ok(socket)
    await new Promise<void>((resolve) => socket!.once('close', () => resolve()))
    const now = performance.now()
    return { headers, closedAfterMs: now - endedAt, sinceRequestMs: now - sentAt, lab }
  } finally {
    agent.destroy()
  }
}

test('closes an idle connection about keepAliveTimeoutMs (200) after the response, without Keep-Alive', async () => {
  const { headers, closedAfterMs, sinceRequestMs, lab } = await idleClose({})
  assert.equal(headers.connection, 'keep-alive')
  assert.equal(headers['keep-alive'], undefined)
  assert.ok(sinceRequestMs >= 195 && closedAfterMs < 600, `closed ${sinceRequestMs} ms after the request, ${closedAfterMs} ms after the response`)
  assert.equal(lab.requests, 1)
})

test('keepAliveTimeoutMs sets the idle timeout', async () => {
  const { closedAfterMs, sinceRequestMs } = await idleClose({ keepAliveTimeoutMs: 80 })
  assert.ok(sinceRequestMs >= 75 && closedAfterMs < 500, `closed ${sinceRequestMs} ms after the request, ${closedAfterMs} ms after the response`)
})

test('advertiseKeepAlive sends Keep-Alive: timeout= in whole seconds, rounded down', async () => {
  const lab = await startLab('keepalive-race', { keepAliveTimeoutMs: 2500, advertiseKeepAlive: true })
  labs.push(lab)
  const agent = new http.Agent({ keepAlive: true })
  const headers = await new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
    http.get(lab.url, { agent }, (res) => { res.resume(); resolve(res.headers) }).on('error', reject)
  }).finally(() => agent.destroy())
  assert.equal(headers['keep-alive'], 'timeout=2')
})

test('a request within the timeout reuses the connection and restarts the timer', async () => {
  const lab = await startLab('keepalive-race', { keepAliveTimeoutMs: 150 })
  labs.push(lab)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const get = (): Promise<void> => new Promise((resolve, reject) => {
    http.get(lab.url, { agent }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject)
  })
  try {
    for (let i = 0; i < 3; i++) {
      await get()
      await new Promise((r) => setTimeout(r, 60))
    }
    assert.equal(lab.connections, 1)
    assert.equal(lab.requests, 3)
  } finally {
    agent.destroy()
  }
})
