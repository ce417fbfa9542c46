/** `portico doctor`: argument checks, progress on a TTY, report rendering and the exit code. */
import { parseDuration } from '../config/units.ts'
import { renderJson, renderMarkdown, renderText, useColor } from '../doctor/report.ts'
import { DoctorUsageError, runDoctor, type DoctorInput } from '../doctor/run.ts'

/** Options of `portico doctor` as commander parses them: the run's inputs plus output and limits as typed. */
export interface DoctorOptions extends Pick<DoctorInput, 'config' | 'nginx' | 'upstream' | 'via' | 'log' | 'backendLog' | 'since'> {
  json?: boolean
  markdown?: boolean
  /** Per-wait bound as a duration (`500ms`, `3s`) or a number of ms. Default 3s. */
  timeout?: string
  /** GETs per endpoint for the latency distribution (1 to 100). Default 10. */
  samples?: number
}

/**
 * Runs `portico doctor` and writes the report to `out` (text, `--markdown` or `--json`).
 * Progress lines go to `err` only when it is a TTY.
 *
 * @returns the exit code: 0 when only info findings, 1 when problems were found, 2 on
 *   usage errors (no target, bad URL or option, unreadable or invalid file)
 */
export async function doctorCommand(opts: DoctorOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const usage = (msg: string) => {
    err.write(`portico doctor: ${msg}\n`)
    return 2
  }
  if (opts.json && opts.markdown) return usage('--json and --markdown cannot be combined')
  let timeoutMs: number | undefined
  if (opts.timeout !== undefined) {
    try {
      timeoutMs = /^\d+$/.test(opts.timeout) ? Number(opts.timeout) : parseDuration(opts.timeout)
    } catch (e) {
      return usage(`--timeout: ${(e as Error).message}`)
    }
    if (timeoutMs <= 0) return usage('--timeout must be above 0')
  }
  const samples = opts.samples === undefined ? undefined : Number(opts.samples)
  if (samples !== undefined && (!Number.isInteger(samples) || samples < 1 || samples > 100)) return usage(`--samples must be a whole number from 1 to 100, got ${opts.samples}`)
  const tty = (err as { isTTY?: boolean }).isTTY === true
  try {
    const report = await runDoctor({
      config: opts.config, nginx: opts.nginx, upstream: opts.upstream, via: opts.via, log: opts.log, backendLog: opts.backendLog, since: opts.since,
      timeoutMs, samples, onProgress: tty ? (msg) => err.write(`… ${msg}\n`) : undefined,
    })
    out.write(opts.json ? renderJson(report) : opts.markdown ? renderMarkdown(report) : renderText(report, { color: useColor(out) }))
    return report.findings.some((f) => f.severity !== 'info') ? 1 : 0
  } catch (e) {
    if (e instanceof DoctorUsageError) return usage(e.message)
    throw e
  }
}
