/**
 * A doctor finding: one thing found wrong (or worth knowing), with its evidence and fix.
 */
import type { CauseType } from '../failures/causes.ts'

/** How bad a finding is, most severe first. */
export type Severity = 'critical' | 'error' | 'warning' | 'info'

/** Severity order used for ranking and exit codes (lower is worse). */
export const SEVERITY_ORDER: Readonly<Record<Severity, number>> = { critical: 0, error: 1, warning: 2, info: 3 }

/**
 * One finding of `portico doctor`. Findings are ranked most likely cause first by
 * `likelihood`, then by severity.
 */
export interface Finding {
  /** Stable identifier of the check and what it found, e.g. `tcp.refused`, `keepalive.race`. */
  id: string
  severity: Severity
  /** RFC 9209 error type this finding explains, or null when none applies. */
  cause: CauseType | null
  /** One line in plain words. */
  title: string
  /** Numbers, log lines and probe results that support the finding. */
  evidence: string[]
  /** What to change, in the vocabulary of the system diagnosed (nginx directives or Portico keys). */
  fix: string
  /** How likely this finding explains the reported errors, 0 to 1; used for ranking. */
  likelihood: number
  /** What was probed: an endpoint URL, a host name, a file. */
  target?: string
  /**
   * Set by ranking: 0 a probe-proven cause that explains logged errors, 1 probe-proven,
   * 2 log-only symptom, 3 configuration or host risk, 4 info (docs/doctor.md, "Ranking").
   */
  rank?: number
  /** Log findings only, dropped by ranking: the endpoints their lines name, to match them with the probe of that endpoint. */
  logEndpoints?: string[]
}
