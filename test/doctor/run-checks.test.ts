// Host and Portico config checks that runDoctor adds to the probe findings.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkHost, countTimeWait, readHost } from '../../src/doctor/host.ts'
import { checkPorticoConfig } from '../../src/doctor/checks/portico-config.ts'
import { parseConfig } from '../../src/config/load.ts'

test('host numbers are read and judged; risks only above thresholds', async () => {
  const h = await readHost(['/'])
  assert.ok(h.cpus >= 1 && h.totalMemBytes > 0)
  const risky = checkHost({ ...h, load1: h.cpus * 3, freeMemBytes: 1, somaxconn: 128, openFiles: { open: 950, softLimit: 1000 } })
  for (const id of ['host.load', 'host.memory', 'host.somaxconn', 'host.open_files']) assert.notEqual(risky.find((f) => f.id === id)?.severity, 'info', id)
  const calm = checkHost({ ...h, load1: 0, freeMemBytes: h.totalMemBytes, somaxconn: 4096, openFiles: { open: 1, softLimit: 1000 } })
  for (const id of ['host.load', 'host.memory', 'host.somaxconn', 'host.open_files']) assert.equal(calm.find((f) => f.id === id)?.severity, 'info', id)
})

test('TIME_WAIT is state 06 of /proc/net/tcp', () => {
  const text = '  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A\n   1: 0100007F:1F90 0100007F:C350 06\n'
  assert.equal(countTimeWait(text), 1)
})

test('Portico config checks speak Portico keys', () => {
  const config = parseConfig(`listeners: [ { address: "127.0.0.1:0" } ]
routes: [ { upstream: api } ]
upstreams:
  api:
    endpoints: [ "https://127.0.0.1:80" ]
    timeouts: { connect: 5s, response_header: 1s }
    keepalive: { idle_timeout: 10s }
`, 'portico.yaml')
  const ids = checkPorticoConfig(config).map((f) => f.id).sort()
  assert.deepEqual(ids, ['config.header_below_connect', 'config.keepalive_idle', 'config.scheme_port'])
  const ka = checkPorticoConfig(config).find((f) => f.id === 'config.keepalive_idle')
  assert.match(ka?.fix ?? '', /upstreams\.api\.keepalive\.idle_timeout: 4s/)
})
