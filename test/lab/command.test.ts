/**
 * `portico lab` (labCommand): the scenario listing, unknown names, and a run stopped by SIGINT.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { PassThrough } from 'node:stream'
import { test } from 'node:test'
import { labCommand } from '../../src/cli/lab.ts'
import { SCENARIOS } from '../../src/lab/index.ts'

/** A writable stream that keeps what was written. */
function capture(): { out: PassThrough; text: () => string } {
  const out = new PassThrough()
  let text = ''
  out.on('data', (c: Buffer) => { text += c })
  return { out, text: () => text }
}

test('--list names every scenario with its expected cause and description', async () => {
  const { out, text } = capture()
  assert.equal(await labCommand(undefined, { list: true }, out), 0)
  const lines = text().trimEnd().split('\n')
  assert.equal(lines.length, SCENARIOS.length + 2, 'header, ok, then one line a scenario')
  for (const s of SCENARIOS) {
    const line = lines.find((l) => l.startsWith(`${s.name} `))
    assert.ok(line, s.name)
    assert.ok(line.includes(s.expect) && line.includes(s.description), line)
  }
  assert.ok(lines.some((l) => l.startsWith('ok ') && l.includes('no error')))
})

test('an unknown or missing scenario exits 2 and lists the valid names', async () => {
  for (const name of ['nope', undefined]) {
    const { out, text } = capture()
    assert.equal(await labCommand(name, {}, out), 2)
    for (const s of SCENARIOS) assert.ok(text().includes(s.name), s.name)
  }
})

test('a scenario prints ready-to-run lines, serves until SIGINT, then closes', { timeout: 5000 }, async () => {
  const { out, text } = capture()
  const listeners = process.listenerCount('SIGINT')
  const run = labCommand('close-before-header', {}, out)
  while (!text().includes('Ctrl-C')) await new Promise((resolve) => setTimeout(resolve, 5))
  const url = /upstream: (\S+)/.exec(text())?.[1]
  assert.match(url ?? '', /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.ok(text().includes(`portico serve --listen 127.0.0.1:8080 --to ${url}`))
  assert.ok(text().includes(`proxy_pass ${url};`))
  assert.ok(text().includes(`portico doctor --upstream ${url}`))
  assert.ok(text().includes('error=connection_terminated'))

  const port = Number(new URL(url!).port)
  const ended = await new Promise<boolean>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write('GET / HTTP/1.1\r\nHost: lab\r\n\r\n'))
    s.on('end', () => { s.destroy(); resolve(true) })
    s.on('error', () => resolve(false))
  })
  assert.ok(ended)

  // Only the command's own listener sees this: emit() runs handlers, it sends no signal.
  process.emit('SIGINT')
  assert.equal(await run, 0)
  assert.match(text(), /stopped \(1 connections, 1 requests\)/)
  assert.equal(process.listenerCount('SIGINT'), listeners)
})

test('--port picks the port', { timeout: 5000 }, async () => {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as net.AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  const { out, text } = capture()
  const run = labCommand('refuse', { port }, out)
  while (!text().includes('Ctrl-C')) await new Promise((resolve) => setTimeout(resolve, 5))
  assert.ok(text().includes(`upstream: http://127.0.0.1:${port}\n`))
  process.emit('SIGTERM')
  assert.equal(await run, 0)
})
