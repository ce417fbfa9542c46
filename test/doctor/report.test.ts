import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { PassThrough } from 'node:stream'
import { startLab } from '../../src/lab/index.ts'
import { runDoctor } from '../../src/doctor/run.ts'
import { doctorJsonSchema, renderJson, renderMarkdown, renderText, reportJsonSchema, useColor } from '../../src/doctor/report.ts'
import { doctorCommand } from '../../src/cli/doctor.ts'

const SCHEMA_FILE = new URL('../../docs/doctor.schema.json', import.meta.url)

async function refusedReport(t: import('node:test').TestContext) {
  const lab = await startLab('refuse')
  t.after(() => lab.close())
  return { lab, report: await runDoctor({ upstream: [lab.url], timeoutMs: 300, diskPaths: [] }) }
}

test('JSON output validates against the schema, ranked most likely first', async (t) => {
  const { report } = await refusedReport(t)
  const json = reportJsonSchema.parse(JSON.parse(renderJson(report)))
  assert.equal(json.findings[0].cause, 'connection_refused')
  for (let i = 1; i < json.findings.length; i++) assert.ok(json.findings[i - 1].likelihood >= json.findings[i].likelihood)
  assert.deepEqual(Object.keys(json.findings[0]).slice(0, 6), ['id', 'severity', 'cause', 'title', 'evidence', 'fix'])
})

test('docs/doctor.schema.json is current (UPDATE_SCHEMA=1 rewrites it)', async () => {
  const expected = `${JSON.stringify(doctorJsonSchema(), null, 2)}\n`
  if (process.env.UPDATE_SCHEMA === '1') await writeFile(SCHEMA_FILE, expected)
  assert.equal(await readFile(SCHEMA_FILE, 'utf8'), expected)
})

test('text: severity, cause, title, evidence and fix; colour only when asked', async (t) => {
  const { report, lab } = await refusedReport(t)
  const text = renderText(report)
  assert.match(text, /1\. CRITICAL connection_refused: Nothing listens on 127\.0\.0\.1:\d+/)
  assert.match(text, /evidence: connect 127\.0\.0\.1:\d+: refused/)
  assert.match(text, /fix: +Start the application/)
  assert.ok(text.includes(lab.url))
  assert.doesNotMatch(text, /\x1b\[/)
  assert.match(renderText(report, { color: true }), /\x1b\[1;31mCRITICAL/)
})

test('colour needs a TTY and NO_COLOR unset', () => {
  const tty = Object.assign(new PassThrough(), { isTTY: true })
  assert.equal(useColor(tty, {}), true)
  assert.equal(useColor(tty, { NO_COLOR: '1' }), false)
  assert.equal(useColor(new PassThrough(), {}), false)
})

test('markdown: a table and one section per problem', async (t) => {
  const { report } = await refusedReport(t)
  const md = renderMarkdown(report)
  assert.match(md, /^# portico doctor: upstream/)
  assert.match(md, /\| 1 \| critical \| `connection_refused` \|/)
  assert.match(md, /\*\*Fix:\*\* Start the application/)
})

function sink() {
  const s = new PassThrough()
  let text = ''
  s.on('data', (d) => (text += d))
  return { s, get text() { return text } }
}

test('doctorCommand exit codes: 1 for problems, 2 for usage errors, 0 only without problems', async (t) => {
  const refused = await startLab('refuse')
  t.after(() => refused.close())
  const out = sink()
  const err = sink()
  assert.equal(await doctorCommand({ upstream: [refused.url], timeout: '300ms', json: true }, out.s, err.s), 1)
  assert.equal(JSON.parse(out.text).findings[0].cause, 'connection_refused')
  assert.equal(err.text, '', 'no progress when stderr is not a TTY')
  assert.equal(await doctorCommand({}, sink().s, err.s), 2)
  assert.match(err.text, /nothing to diagnose/)
  assert.equal(await doctorCommand({ upstream: ['not a url'] }, sink().s, sink().s), 2)
  assert.equal(await doctorCommand({ config: '/nonexistent.yaml' }, sink().s, sink().s), 2)
  assert.equal(await doctorCommand({ upstream: [refused.url], timeout: 'soon' }, sink().s, sink().s), 2)
  const ok = await startLab('ok')
  t.after(() => ok.close())
  const okOut = sink()
  const code = await doctorCommand({ upstream: [ok.url], timeout: '500ms', samples: 2, json: true }, okOut.s, sink().s)
  const problems = JSON.parse(okOut.text).findings.filter((f: { severity: string }) => f.severity !== 'info')
  assert.equal(code, problems.length ? 1 : 0)
})
