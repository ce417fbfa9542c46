/**
 * A small YAML writer for generated configs whose every key can carry a trailing comment
 * (where it came from), and whose lists can hold commented-out items. The output is
 * block-style YAML 1.2 that `yaml` (and `portico check`) reads back unchanged.
 */

/** A scalar value with an optional trailing comment. */
export interface YScalar {
  kind: 'scalar'
  value: string | number | boolean
  comment?: string
}

/** A mapping; keys keep the order they were set in. */
export interface YMap {
  kind: 'map'
  entries: Array<[key: string, node: YNode]>
  comment?: string
}

/** A sequence. */
export interface YSeq {
  kind: 'seq'
  items: YNode[]
  comment?: string
}

/** A whole-line comment inside a mapping or sequence (e.g. an item left out, and why). */
export interface YComment {
  kind: 'comment'
  text: string
}

export type YNode = YScalar | YMap | YSeq | YComment

/** A scalar node. */
export function scalar(value: string | number | boolean, comment?: string): YScalar {
  return comment ? { kind: 'scalar', value, comment } : { kind: 'scalar', value }
}

/** An empty mapping; fill it with {@link set}. */
export function map(comment?: string): YMap {
  return comment ? { kind: 'map', entries: [], comment } : { kind: 'map', entries: [] }
}

/** A sequence of the given items. */
export function seq(items: YNode[] = [], comment?: string): YSeq {
  return comment ? { kind: 'seq', items, comment } : { kind: 'seq', items }
}

/** A whole-line comment. */
export function note(text: string): YComment {
  return { kind: 'comment', text }
}

/** Sets `key` in a mapping (replacing an earlier value of that key) and returns the node set. */
export function set<T extends YNode>(m: YMap, key: string, node: T): T {
  const i = m.entries.findIndex(([k]) => k === key)
  if (i >= 0) m.entries[i] = [key, node]
  else m.entries.push([key, node])
  return node
}

/** The node of `key` in a mapping, or undefined. */
export function get(m: YMap, key: string): YNode | undefined {
  return m.entries.find(([k]) => k === key)?.[1]
}

/** The plain value of a node tree (comments dropped), as the YAML would load. */
export function toValue(node: YNode): unknown {
  switch (node.kind) {
    case 'scalar': return node.value
    case 'seq': return node.items.filter((i) => i.kind !== 'comment').map(toValue)
    case 'map': return Object.fromEntries(node.entries.filter(([, n]) => n.kind !== 'comment').map(([k, n]) => [k, toValue(n)]))
    case 'comment': return undefined
  }
}

const RESERVED = /^(true|false|yes|no|on|off|null|y|n|~)$/i
const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./-]*$/

/** A scalar as YAML: plain when that cannot be misread, else a JSON (double-quoted) string. */
function formatScalar(v: string | number | boolean): string {
  if (typeof v !== 'string') return String(v)
  if (PLAIN.test(v) && !RESERVED.test(v) && !v.endsWith(':')) return v
  return JSON.stringify(v)
}

function formatKey(k: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(k) && !RESERVED.test(k) ? k : JSON.stringify(k)
}

function trailing(comment: string | undefined): string {
  return comment ? `  # ${comment.replace(/\s*\n\s*/g, ' ')}` : ''
}

function isEmpty(n: YNode): boolean {
  return (n.kind === 'seq' && n.items.length === 0) || (n.kind === 'map' && n.entries.length === 0)
}

function renderMap(m: YMap, indent: number, out: string[]): void {
  const pad = ' '.repeat(indent)
  for (const [key, node] of m.entries) {
    if (node.kind === 'comment') { out.push(`${pad}# ${node.text}`); continue }
    const k = formatKey(key)
    if (node.kind === 'scalar') out.push(`${pad}${k}: ${formatScalar(node.value)}${trailing(node.comment)}`)
    else if (isEmpty(node)) out.push(`${pad}${k}: ${node.kind === 'seq' ? '[]' : '{}'}${trailing(node.comment)}`)
    else {
      out.push(`${pad}${k}:${trailing(node.comment)}`)
      if (node.kind === 'map') renderMap(node, indent + 2, out)
      else renderSeq(node, indent + 2, out)
    }
  }
}

function renderSeq(s: YSeq, indent: number, out: string[]): void {
  const pad = ' '.repeat(indent)
  for (const item of s.items) {
    if (item.kind === 'comment') { out.push(`${pad}# ${item.text}`); continue }
    if (item.kind === 'scalar') { out.push(`${pad}- ${formatScalar(item.value)}${trailing(item.comment)}`); continue }
    if (isEmpty(item)) { out.push(`${pad}- ${item.kind === 'seq' ? '[]' : '{}'}${trailing(item.comment)}`); continue }
    if (item.comment) out.push(`${pad}# ${item.comment}`)
    const lines: string[] = []
    if (item.kind === 'map') renderMap(item, indent + 2, lines)
    else renderSeq(item, indent + 2, lines)
    // The first line of the item goes after "- ", the rest stay indented under it.
    const first = lines.findIndex((l) => !l.trimStart().startsWith('#'))
    for (let i = 0; i < lines.length; i++) {
      out.push(i === first ? `${pad}- ${lines[i].slice(indent + 2)}` : lines[i])
    }
  }
}

/**
 * Renders a mapping as a YAML document.
 *
 * @param header lines written first, each as a `# ` comment
 */
export function renderYaml(root: YMap, header: string[] = []): string {
  const out = header.map((h) => (h ? `# ${h}` : '#'))
  if (out.length > 0) out.push('')
  const body: string[] = []
  renderMap(root, 0, body)
  // A blank line between top-level keys, for reading.
  for (let i = 0; i < body.length; i++) {
    if (i > 0 && /^[A-Za-z"]/.test(body[i]) && !body[i - 1].startsWith('#')) out.push('')
    out.push(body[i])
  }
  return out.join('\n') + '\n'
}
