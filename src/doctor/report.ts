/** Renderers of a doctor report: terminal text, Markdown and JSON (with the zod schema behind docs/doctor.schema.json). */
import { z } from 'zod'
import { CAUSE_TYPES } from '../failures/causes.ts'
import type { Finding, Severity } from './finding.ts'
import type { Report } from './run.ts'

const severity = z.enum(['critical', 'error', 'warning', 'info'])

/** One finding in the JSON output. */
export const findingJsonSchema = z.object({
  id: z.string().describe('Check and what it found, e.g. `tcp.refused`, `keepalive.race`'),
  severity,
  cause: z.enum(CAUSE_TYPES as [string, ...string[]]).nullable().describe('RFC 9209 error type this finding explains, or null'),
  title: z.string(),
  evidence: z.array(z.string()),
  fix: z.string().describe('What to change, in the vocabulary of the system diagnosed; empty for info findings'),
  likelihood: z.number().min(0).max(1).describe('How likely this explains the errors; findings are ordered by it'),
  target: z.string().optional().describe('Endpoint URL, host name, file, or `host`'),
  rank: z.number().int().min(0).max(4).optional().describe('0 a probe-proven cause that explains logged errors, 1 probe-proven, 2 log-only symptom, 3 configuration or host risk, 4 info'),
})

/** The JSON output of `portico doctor --json` (version 1). */
export const reportJsonSchema = z.object({
  version: z.literal(1),
  system: z.enum(['portico', 'nginx', 'upstream']).describe('What was diagnosed; decides the vocabulary of fixes'),
  durationMs: z.number().describe('Wall time of the run, ms'),
  summary: z.object({ critical: z.number().int(), error: z.number().int(), warning: z.number().int(), info: z.number().int() }),
  findings: z.array(findingJsonSchema).describe('Most likely cause first, then by severity'),
  targets: z.array(z.object({
    url: z.string(),
    upstream: z.string().optional(),
    source: z.string().optional(),
    proxy: z.object({
      connectTimeoutMs: z.number(),
      responseHeaderTimeoutMs: z.number(),
      bodyIdleTimeoutMs: z.number(),
      keepaliveIdleTimeoutMs: z.number().nullable(),
      maxResponseHeaderBytes: z.number(),
    }),
  })),
  probes: z.array(z.record(z.string(), z.unknown())).describe('Raw probe results per target (dns, tcp, tls, http, keepalive, bypass); not a stable interface'),
  host: z.record(z.string(), z.unknown()).optional().describe('Raw host numbers; not a stable interface'),
})

/** The JSON output type. */
export type ReportJson = z.infer<typeof reportJsonSchema>

/** JSON Schema (draft 2020-12) of the JSON output, as committed in docs/doctor.schema.json. */
export function doctorJsonSchema(): Record<string, unknown> {
  return { $id: 'https://portico.dev/schemas/doctor.schema.json', title: 'portico doctor --json output', ...z.toJSONSchema(reportJsonSchema, { io: 'output' }) }
}

function counts(findings: Finding[]): Record<Severity, number> {
  const c: Record<Severity, number> = { critical: 0, error: 0, warning: 0, info: 0 }
  for (const f of findings) c[f.severity]++
  return c
}

/** The report as the JSON value `--json` prints (see {@link reportJsonSchema}). */
export function toJson(report: Report): ReportJson {
  // Round-trip through JSON so non-JSON values (Infinity, sockets, undefined) take their JSON form.
  const plain = (v: unknown) => JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x)))
  return {
    version: 1,
    system: report.system,
    durationMs: Math.round(report.durationMs),
    summary: counts(report.findings),
    findings: report.findings.map((f) => ({ id: f.id, severity: f.severity, cause: f.cause, title: f.title, evidence: f.evidence, fix: f.fix, likelihood: f.likelihood, ...(f.target ? { target: f.target } : {}), ...(f.rank !== undefined ? { rank: f.rank } : {}) })),
    targets: report.targets.map((t) => ({ url: t.url, ...(t.upstream ? { upstream: t.upstream } : {}), ...(t.source ? { source: t.source } : {}), proxy: { ...t.proxy } })),
    probes: report.probes.map((p) => plain({ ...p, target: p.target.url })),
    ...(report.host ? { host: plain(report.host) } : {}),
  }
}

/** `--json`: the JSON output, pretty-printed, with a final newline. */
export function renderJson(report: Report): string {
  return `${JSON.stringify(toJson(report), null, 2)}\n`
}

const COLORS: Record<Severity, string> = { critical: '\x1b[1;31m', error: '\x1b[31m', warning: '\x1b[33m', info: '\x1b[2m' }
const RESET = '\x1b[0m'

/**
 * Whether to colour output written to `stream`: only a TTY, and only when NO_COLOR is
 * unset or empty (https://no-color.org).
 */
export function useColor(stream: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true && !env.NO_COLOR
}

function summaryLine(report: Report): string {
  const c = counts(report.findings)
  const n = report.targets.length
  return `${n} endpoint${n === 1 ? '' : 's'} probed in ${(report.durationMs / 1000).toFixed(1)}s: ${c.critical} critical, ${c.error} error, ${c.warning} warning, ${c.info} info`
}

/**
 * Terminal text: problems first with cause, title, evidence and fix; info findings as
 * one line each at the end.
 *
 * @param opts.color add ANSI colours (see {@link useColor})
 */
export function renderText(report: Report, opts: { color?: boolean } = {}): string {
  const paint = (s: Severity, text: string) => (opts.color ? `${COLORS[s]}${text}${RESET}` : text)
  const problems = report.findings.filter((f) => f.severity !== 'info')
  const lines = [`portico doctor (${report.system}): ${summaryLine(report)}`, ...(problems.length ? [headline(problems[0])] : []), '']
  if (problems.length === 0) lines.push('No problems found.', '')
  problems.forEach((f, i) => {
    lines.push(`${i + 1}. ${paint(f.severity, f.severity.toUpperCase())} ${f.cause ?? '-'}: ${f.title}`)
    if (f.target) lines.push(`   target:   ${f.target}`)
    for (const e of f.evidence) lines.push(`   evidence: ${e}`)
    if (f.fix) lines.push(`   fix:      ${f.fix}`)
    lines.push('')
  })
  const { fine, notes } = splitInfo(report.findings)
  if (notes.length) {
    lines.push('Worth knowing (not a cause of these errors):')
    for (const f of notes) lines.push(paint('info', `  - ${f.title}${f.fix ? `: ${f.fix}` : ''}`))
    lines.push('')
  }
  if (fine.length) {
    lines.push('Checked and fine:')
    for (const f of fine) lines.push(paint('info', `  - ${f.title}${f.target && f.target !== 'host' ? ` (${f.target})` : ''}`))
    lines.push('')
  }
  return lines.join('\n')
}

/**
 * Info findings in two groups: checks that passed (no cause, no fix) are "fine"; an info
 * finding that names a cause or a fix states a risk, which is not "fine".
 */
function splitInfo(findings: Finding[]): { fine: Finding[]; notes: Finding[] } {
  const info = findings.filter((f) => f.severity === 'info')
  return { fine: info.filter((f) => f.cause === null && !f.fix), notes: info.filter((f) => f.cause !== null || !!f.fix) }
}

/** The top finding in one sentence: `Most likely: <title>; fix: <fix>`. */
export function headline(f: Finding): string {
  return `Most likely: ${f.title}${f.fix ? `; fix: ${f.fix}` : ''}`
}

const md = (s: string) => s.replace(/([|<>])/g, '\\$1')

/** `--markdown`: a report for tickets and chat, one section per problem. */
export function renderMarkdown(report: Report): string {
  const problems = report.findings.filter((f) => f.severity !== 'info')
  const lines = [`# portico doctor: ${report.system}`, '', summaryLine(report), '', ...(problems.length ? [`**${md(headline(problems[0]))}**`, ''] : [])]
  if (problems.length) {
    lines.push('| # | severity | cause | finding |', '|---|---|---|---|')
    problems.forEach((f, i) => lines.push(`| ${i + 1} | ${f.severity} | ${f.cause ? `\`${f.cause}\`` : '-'} | ${md(f.title)} |`))
    lines.push('')
  } else lines.push('No problems found.', '')
  problems.forEach((f, i) => {
    lines.push(`## ${i + 1}. ${md(f.title)}`, '', `- **severity:** ${f.severity}`, `- **cause:** ${f.cause ? `\`${f.cause}\`` : 'none'}`, `- **check:** \`${f.id}\``)
    if (f.target) lines.push(`- **target:** \`${f.target}\``)
    lines.push('', '**Evidence**', '', ...f.evidence.map((e) => `- ${md(e)}`), '', `**Fix:** ${f.fix}`, '')
  })
  const { fine, notes } = splitInfo(report.findings)
  if (notes.length) lines.push('## Worth knowing', '', ...notes.map((f) => `- ${md(f.title)}${f.fix ? `: ${f.fix}` : ''}`), '')
  if (fine.length) lines.push('## Checked and fine', '', ...fine.map((f) => `- ${md(f.title)}`), '')
  return lines.join('\n')
}
