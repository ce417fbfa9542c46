/**
 * Access rules (nginx `allow`/`deny`): an ordered list of rules, each allowing or denying a
 * list of client address ranges, optionally for some methods or paths only. The first rule
 * that matches decides; a request no rule matches is allowed. Compiled once per config.
 */
import type { AccessRuleConfig } from '../config/schema.ts'
import { CidrList } from '../lib/cidr.ts'
import { pathMatches, pathOnly } from '../routing/router.ts'

/** One compiled rule. */
interface Rule {
  readonly allow: boolean
  readonly clients: CidrList
  readonly methods: ReadonlySet<string> | null
  /** Path prefix without a trailing slash, or null. */
  readonly prefix: string | null
  readonly regex: RegExp | null
  /** The rule as written, for the log's details. */
  readonly text: string
}

/** A compiled list of access rules. */
export class AccessRules {
  readonly #rules: readonly Rule[]

  /** @param rules the `access` list of a listener or route, in order */
  constructor(rules: readonly AccessRuleConfig[], where: string) {
    this.#rules = rules.map((r, i) => {
      const ranges = (r.allow ?? r.deny) as string[]
      const conds = [
        r.methods ? `methods ${r.methods.join(',')}` : '',
        r.path_prefix !== undefined ? `path_prefix ${r.path_prefix}` : '',
        r.path_regex !== undefined ? `path_regex ${r.path_regex}` : '',
      ].filter(Boolean).join(', ')
      return {
        allow: r.allow !== undefined,
        clients: new CidrList(ranges),
        methods: r.methods ? new Set(r.methods) : null,
        prefix: r.path_prefix !== undefined ? r.path_prefix.replace(/\/+$/, '') : null,
        regex: r.path_regex !== undefined ? new RegExp(r.path_regex) : null,
        text: `${where}.access[${i}] ${r.allow !== undefined ? 'allow' : 'deny'} ${ranges.join(',')}${conds ? ` (${conds})` : ''}`,
      }
    })
  }

  /** Whether there are no rules (the check is skipped). */
  get empty(): boolean {
    return this.#rules.length === 0
  }

  /**
   * Applies the rules in order to a request.
   *
   * @param clientIp the real client address
   * @param method the request method
   * @param target the normalised request target (its query is ignored)
   * @returns null when allowed, else the rule that denied
   */
  check(clientIp: string, method: string, target: string): string | null {
    for (const r of this.#rules) {
      if (r.methods !== null && !r.methods.has(method)) continue
      if (r.prefix !== null && !pathMatches(r.prefix, target)) continue
      if (r.regex !== null && !r.regex.test(pathOnly(target))) continue
      if (!r.clients.contains(clientIp)) continue
      return r.allow ? null : r.text
    }
    return null
  }
}
