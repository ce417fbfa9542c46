/**
 * Header rules of a route (nginx `proxy_set_header`, `add_header`, `proxy_hide_header`;
 * Traefik's headers middleware): fields removed, set and added on the request sent upstream
 * and on the response relayed to the client, in that order. Compiled once per config.
 */
import type { OutgoingHttpHeaders } from 'node:http'
import type { HeaderRulesConfig } from '../config/schema.ts'

/** One direction's rules, compiled: lower-case names. */
export class HeaderRules {
  /** Names removed, and names set (a set field replaces every field of its name). */
  readonly #drop: ReadonlySet<string>
  readonly #set: ReadonlyArray<readonly [string, string]>
  readonly #add: ReadonlyArray<readonly [string, string]>

  constructor(c: HeaderRulesConfig) {
    this.#set = Object.entries(c.set).map(([k, v]) => [k.toLowerCase(), v] as const)
    this.#add = Object.entries(c.add).map(([k, v]) => [k.toLowerCase(), v] as const)
    this.#drop = new Set([...c.remove.map((n) => n.toLowerCase()), ...this.#set.map(([k]) => k)])
  }

  /**
   * Applies the rules to a flat `[name, value, ...]` list (the upstream request's raw form).
   *
   * @returns a new list
   */
  applyToList(list: readonly string[]): string[] {
    const out: string[] = []
    for (let i = 0; i < list.length; i += 2) {
      if (this.#drop.has(list[i].toLowerCase())) continue
      out.push(list[i], list[i + 1])
    }
    for (const [k, v] of this.#set) out.push(k, v)
    for (const [k, v] of this.#add) out.push(k, v)
    return out
  }

  /** Applies the rules in place to a response header object with lower-case names. */
  applyToObject(headers: OutgoingHttpHeaders): void {
    for (const name of this.#drop) if (name in headers) delete headers[name]
    for (const [k, v] of this.#set) headers[k] = v
    for (const [k, v] of this.#add) {
      const old = headers[k]
      headers[k] = old === undefined ? v : Array.isArray(old) ? [...old, v] : [String(old), v]
    }
  }
}
