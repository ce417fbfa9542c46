/**
 * Fault modes that need byte-exact control of the wire, served over raw TCP: a request
 * head is read, then the server hangs, resets, closes, talks nonsense, or sends a
 * response that breaks in a chosen way.
 */
import net from 'node:net'
import type { LabContext } from './context.ts'

/** Largest request head read before acting anyway, in bytes (a client sending an endless head still gets the fault). */
const MAX_HEAD_BYTES = 64 * 1024
const HEAD_END = Buffer.from('\r\n\r\n')

/** What a raw fault does once a request head has arrived. */
export type RawFault = (socket: net.Socket, context: LabContext) => void

/**
 * A net.Server that reads each connection's first request head (up to the blank line),
 * counts it as a request, then hands the socket to `fault`. Later bytes are read and dropped.
 */
export function rawServer(context: LabContext, fault: RawFault): net.Server {
  return net.createServer((socket) => {
    let head = Buffer.alloc(0)
    let acted = false
    socket.on('data', (chunk: Buffer) => {
      if (acted) return
      head = Buffer.concat([head, chunk])
      if (head.indexOf(HEAD_END) === -1 && head.length < MAX_HEAD_BYTES) return
      acted = true
      context.requests++
      fault(socket, context)
    })
  })
}

/** 'hang': never answers; the socket stays open until the client or close() ends it. */
export const hang: RawFault = () => {}

/** 'reset-before-header': an RST right after the request (SO_LINGER 0 close). */
export const resetBeforeHeader: RawFault = (socket) => {
  socket.resetAndDestroy()
}

/** 'close-before-header': a FIN right after the request, no byte of response. */
export const closeBeforeHeader: RawFault = (socket) => {
  socket.end()
}

/** The identification line an OpenSSH server sends, and its answer to a client that is not SSH. */
export const GARBAGE = 'SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\nInvalid SSH identification string.\r\n'

/** 'garbage': answers like an SSH server does to a stranger, then closes. */
export const garbage: RawFault = (socket) => {
  socket.end(GARBAGE)
}

/**
 * Builds a 200 response head whose header section (status line through the final blank
 * line) is exactly `headerBytes` long, padded with `X-Filler-N` fields of at most ~1 KiB
 * each (typical of oversized cookie headers), or the smallest possible head if
 * `headerBytes` is below it.
 */
export function bigHead(headerBytes: number, bodyBytes: number): string {
  let head = `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${bodyBytes}\r\nconnection: close\r\n`
  let left = headerBytes - head.length - 2
  for (let i = 1; left > 0; i++) {
    const name = `x-filler-${i}: `
    // Keep the last field long enough to carry at least one value byte.
    const take = left - (name.length + 2) > 1100 ? 1000 : left - name.length - 2
    if (take < 1) break
    head += `${name}${'a'.repeat(take)}\r\n`
    left -= name.length + take + 2
  }
  return head + '\r\n'
}

/** 'big-header': a 200 whose header section is `headerBytes` long, then a 3-byte body, then FIN. */
export function bigHeader(headerBytes: number): RawFault {
  const response = bigHead(headerBytes, 3) + 'ok\n'
  return (socket) => {
    socket.end(response)
  }
}

/** Bytes of body sent before a mid-body fault: 64 KiB, or half the body if smaller. */
export function partialBytes(bodyBytes: number): number {
  return Math.min(64 * 1024, Math.floor(bodyBytes / 2))
}

function partialResponse(socket: net.Socket, bodyBytes: number, then: () => void): void {
  socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${bodyBytes}\r\n\r\n`)
  socket.write(Buffer.alloc(partialBytes(bodyBytes), 'x'), then)
}

/**
 * 'reset-mid-body': a 200 with Content-Length `bodyBytes`, part of the body, then an RST.
 * The RST waits 20 ms after the kernel took the bytes so the client reads them first
 * (an RST discards data still unsent).
 */
export function resetMidBody(bodyBytes: number): RawFault {
  return (socket, context) => {
    partialResponse(socket, bodyBytes, () => {
      context.after(20, () => socket.resetAndDestroy())
    })
  }
}

/** 'idle-mid-body': a 200 with Content-Length `bodyBytes`, part of the body, then silence with the socket kept open. */
export function idleMidBody(bodyBytes: number): RawFault {
  return (socket) => {
    partialResponse(socket, bodyBytes, () => {})
  }
}
