/**
 * The `portico` command line as users run it: `node src/cli/main.ts …` in a child process,
 * its exit code, stdout and stderr. Listeners and labs are on 127.0.0.1 port 0; the ports
 * taken are read from what `serve` prints.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, test } from 'node:test'
import { SCENARIOS, startLab, type LabServer } from '../../src/lab/index.ts'
import { portico, until, type PorticoProcess } from '../admin/serve-process.ts'
import { useTempDir } from '../config/temp-dir.ts'

const dir = useTempDir('portico-cli-')
let labs: LabServer[] = []
afterEach(async () => {
  await Promise.all(labs.map((l) => l.close()))
  labs = []
})

/** Runs `portico ARGS` to its end. */
async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = portico(args)
  const { code } = await p.exited
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}

/** Starts an 'ok' lab named `name`, closed after the test. */
async function lab(name: string): Promise<LabServer> {
  const l = await startLab('ok', { name })
  labs.push(l)
  return l
}

/** Writes `text` to `name` in the scratch directory and returns its path. */
async function file(name: string, text: string): Promise<string> {
  const path = join(dir(), name)
  await writeFile(path, text)
  return path
}

/**
 * Waits until `p` prints `what` on stderr (`listening on` / `admin API on`) and returns the
 * `host:port` it printed; fails at once if the process exits first.
 */
async function printedAddress(p: PorticoProcess, what: 'listening on' | 'admin API on'): Promise<string> {
  const re = new RegExp(`${what} http://([^\\s/]+)`)
  await Promise.race([
    until(`"${what}" on stderr`, () => re.test(p.stderr()), 15_000),
    p.exited.then(({ code }) => { throw new Error(`portico exited with ${code} before printing "${what}":\n${p.stderr()}`) }),
  ])
  return (re.exec(p.stderr()) as RegExpExecArray)[1]
}

describe('usage', () => {
  test('--help lists every command and exits 0', async () => {
    const r = await run(['--help'])
    assert.equal(r.code, 0, r.stderr)
    for (const command of ['serve', 'check', 'reload', 'doctor', 'lab', 'demo']) {
      assert.match(r.stdout, new RegExp(`^  ${command} `, 'm'), `${command} in the help`)
    }
  })

  test('an unknown command is named on stderr with the usage, exit 1', async () => {
    const r = await run(['frobnicate'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^error: unknown command 'frobnicate'$/m)
    assert.match(r.stderr, /Usage: portico/)
    assert.equal(r.stdout, '')
  })

  test('a missing required option is named with the command usage, exit 1', async () => {
    const r = await run(['check'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /required option '-c, --config <file>' not specified/)
    assert.match(r.stderr, /Usage: portico check/)
  })
})

describe('check', () => {
  test('a valid file: a summary on stdout, nothing on stderr, exit 0', async () => {
    const path = await file('good.yaml', `listeners:
  - address: 127.0.0.1:0
routes:
  - upstream: api
upstreams:
  api:
    endpoints: ["http://127.0.0.1:3001", "http://127.0.0.1:3002"]
`)
    const r = await run(['check', '-c', path])
    assert.deepEqual(r, { code: 0, stdout: 'good.yaml: ok (1 listener, 1 route, 1 upstream, 2 endpoints)\n', stderr: '' })
  })

  test('an invalid file: one file:line:column line per problem on stderr, nothing on stdout, exit 1', async () => {
    const path = await file('bad.yaml', `listeners:
  - address: 127.0.0.1:0
routes:
  - upstream: missing
upstreams:
  api:
    endpoints: ["http://127.0.0.1:3001"]
    timeouts: { connect: soon }
`)
    const r = await run(['check', '-c', path])
    assert.equal(r.code, 1)
    assert.equal(r.stdout, '')
    const lines = r.stderr.trimEnd().split('\n')
    assert.equal(lines.length, 2, r.stderr)
    assert.ok(lines.every((l) => l.startsWith(`${path}:`)), r.stderr)
    assert.match(r.stderr, /:4:15: routes\[0\]\.upstream: unknown upstream "missing"/)
    assert.match(r.stderr, /:8:26: upstreams\.api\.timeouts\.connect: invalid duration "soon"/)
  })

  test('a file that cannot be read: named with line 1, column 1, exit 1', async () => {
    const path = join(dir(), 'absent.yaml')
    const r = await run(['check', '-c', path])
    assert.equal(r.code, 1)
    assert.match(r.stderr, new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:1:1: cannot read the config file: ENOENT`))
  })
})

describe('lab', () => {
  test('--list: a header and one line per scenario with its expected error, exit 0', async () => {
    const r = await run(['lab', '--list'])
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.trimEnd().split('\n')
    assert.match(lines[0], /^SCENARIO\s+EXPECTED ERROR\s+WHAT THE UPSTREAM DOES$/)
    assert.match(lines[1], /^ok\s+no error\s+/)
    assert.equal(lines.length, 2 + SCENARIOS.length)
    for (const s of SCENARIOS) assert.ok(lines.some((l) => new RegExp(`^${s.name}\\s+${s.expect}\\s+\\S`).test(l)), `${s.name} listed with ${s.expect}`)
  })

  test('an unknown scenario names the valid ones, exit 2', async () => {
    const r = await run(['lab', 'no-such-fault'])
    assert.equal(r.code, 2)
    assert.match(r.stdout, /unknown scenario "no-such-fault"; valid scenarios: ok, refuse, /)
  })
})

describe('serve', () => {
  test('quick mode answers through the upstream, logs the request on stdout, and exits 0 on SIGTERM', async () => {
    const up = await lab('quick')
    const p = portico(['serve', '--listen', '127.0.0.1:0', '--to', up.url])
    const listen = await printedAddress(p, 'listening on')
    const res = await fetch(`http://${listen}/hello`, { headers: { 'x-request-id': 'cli-quick-1' } })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('proxy-status'), 'portico; received-status=200')
    assert.equal((await res.json() as { server: string }).server, 'quick')
    await until('the access log line', () => p.stdout().includes('cli-quick-1'))
    const line = JSON.parse(p.stdout().split('\n').find((l) => l.includes('cli-quick-1')) as string) as { path: string; status: number; endpoint: string }
    assert.deepEqual([line.path, line.status, line.endpoint], ['/hello', 200, `127.0.0.1:${up.port}`])
    p.child.kill('SIGTERM')
    assert.deepEqual(await p.exited, { code: 0, signal: null }, p.stderr())
  })

  test('neither a config file nor --to: a usage error, exit 2', async () => {
    const r = await run(['serve'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /give -c portico\.yaml, or --to http:\/\/host:port/)
  })

  test('an invalid config file is refused with file:line:column before listening, exit 1', async () => {
    const path = await file('serve-bad.yaml', 'listeners:\n  - address: nowhere\nroutes: []\nupstreams: {}\n')
    const r = await run(['serve', '-c', path])
    assert.equal(r.code, 1)
    assert.match(r.stderr, new RegExp(`serve-bad\\.yaml:2:\\d+: listeners\\[0\\]\\.address: `))
    assert.doesNotMatch(r.stderr, /listening on/)
  })
})

describe('reload', () => {
  test('against a running instance: the new file is validated, then served; exit 0', async () => {
    const [a, b] = [await lab('a'), await lab('b')]
    const config = (upstream: string): string => `listeners: [{ address: "127.0.0.1:0" }]
routes:
  - upstream: ${upstream}
upstreams:
  a: { endpoints: ["${a.url}"] }
  b: { endpoints: ["${b.url}"] }
admin: { address: "127.0.0.1:0" }
`
    const path = await file('reload.yaml', config('a'))
    const p = portico(['serve', '-c', path])
    const listen = await printedAddress(p, 'listening on')
    const admin = await printedAddress(p, 'admin API on')
    const server = async (): Promise<string> => (await (await fetch(`http://${listen}/`)).json() as { server: string }).server
    assert.equal(await server(), 'a')

    await writeFile(path, config('b'))
    const ok = await run(['reload', '-c', path, '--admin', admin])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /^reloaded: /m)
    assert.equal(await server(), 'b')

    await writeFile(path, config('nowhere'))
    const bad = await run(['reload', '-c', path, '--admin', admin])
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /reload\.yaml:3:15: routes\[0\]\.upstream: unknown upstream "nowhere"/)
    assert.equal(await server(), 'b', 'the running config keeps serving')

    p.child.kill('SIGTERM')
    assert.equal((await p.exited).code, 0, p.stderr())
  })

  test('a file without an admin section and no --admin: says where to add it, exit 1', async () => {
    const path = await file('no-admin.yaml', 'listeners: [{ address: "127.0.0.1:0" }]\nroutes: [{ upstream: a }]\nupstreams: { a: { endpoints: ["http://127.0.0.1:1"] } }\n')
    const r = await run(['reload', '-c', path])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /has no "admin" section/)
    assert.match(r.stderr, /--admin/)
  })
})
