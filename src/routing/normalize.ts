/**
 * Path normalisation before routing (RFC 3986 §6.2.2 and §5.2.4): percent-encoded
 * unreserved characters decoded, other escapes upper-cased, dot-segments removed. Routes
 * match the normalised path and it is the path forwarded upstream, so a `..` can never
 * carry a request out of the prefix that matched it.
 */

/** How a percent-encoded slash (`%2F`) in the path is treated (`listeners[].encoded_slashes`). */
export type EncodedSlashes = 'reject' | 'keep'

/** Why a path cannot be normalised; each is a refusal of src/failures/refusals.ts (400). */
export type PathProblem = 'path_bad_encoding' | 'path_encoded_slash' | 'path_above_root' | 'path_ambiguous_dot_segment'

/** A path that cannot be normalised: the problem and a short detail for the log. */
export interface PathRefusal {
  readonly problem: PathProblem
  readonly detail: string
}

/** Whether a byte is an RFC 3986 §2.3 unreserved character (ALPHA / DIGIT / "-" / "." / "_" / "~"). */
function isUnreserved(b: number): boolean {
  return (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

const HEX = '0123456789ABCDEF'

/** Separators some applications see inside a segment: `;` (path parameters, e.g. Tomcat), an encoded slash, and backslashes (Windows servers). */
const INNER_SEPARATORS = /;|%2F|%5C|\\/

/**
 * Whether a segment would act as a dot-segment for an upstream that splits it further
 * (`..;x`, `..%2Fsecret`, `..\\secret`) or decodes it again (`%252e%252e`, `..%252F`, at
 * any depth): such a segment is refused rather than guessed at.
 */
function ambiguousDotSegment(segment: string): boolean {
  let s = segment
  for (;;) {
    if (INNER_SEPARATORS.test(s)) {
      for (const part of s.split(INNER_SEPARATORS)) if (part === '.' || part === '..') return true
    }
    if (s.indexOf('%25') < 0) return false
    // One more decoding of the escaped "%": what a double-decoding upstream would read.
    s = s.replaceAll('%25', '%').replace(/%2e/gi, '.').replace(/%2f/gi, '%2F').replace(/%5c/gi, '%5C')
    if (s === '.' || s === '..') return true
  }
}

/**
 * Whether the escaped byte `b` at `path[i]` starts an overlong UTF-8 sequence (RFC 3629
 * §3: C0 and C1 leads, E0 before 80–9F, F0 before 80–8F), the old way to spell `.`, `/`
 * or `\` (`%C0%AE`) past a filter to a lenient decoder. Valid UTF-8 and other bytes
 * (legacy Latin-1 escapes) are not.
 */
function overlongUtf8(path: string, i: number, b: number): boolean {
  if (b === 0xc0 || b === 0xc1) return true
  if (b !== 0xe0 && b !== 0xf0) return false
  if (path.charCodeAt(i + 3) !== 37 /* % */) return false
  const next = hexValue(path.charCodeAt(i + 4)) * 16 + hexValue(path.charCodeAt(i + 5))
  return next >= 0x80 && next < (b === 0xe0 ? 0xa0 : 0x90)
}

/**
 * Normalises an origin-form request target (path and query; RFC 9112 §3.2.1).
 * - `%XX` escapes of unreserved characters are decoded (`%2e` → `.`, `%7E` → `~`), other
 *   escapes keep their encoding with upper-case hex (RFC 3986 §6.2.2.1–2);
 * - `%2F` is refused (`reject`) or kept encoded (`keep`), never turned into a separator;
 * - dot-segments are removed (RFC 3986 §5.2.4); a `..` above the root is refused, where
 *   §5.2.4 would silently drop it, because no honest client sends one;
 * - a segment that is a dot-segment once split at `;`, `%2F` or a backslash, or once
 *   decoded again (`%252e%252e`), is refused;
 * - `%00`, malformed escapes and overlong UTF-8 (`%C0%AE`, a dot to a lenient decoder) are refused;
 * - the query is left as it is;
 * - a fragment (`#` and what follows) is dropped: it is not part of a request target
 *   (RFC 9112 §3.2.1) and user agents never send it, so routing and the upstream both see
 *   the target without it (nginx's `$uri` drops it too).
 * Targets that are not origin-form (`*`, absolute-form) are returned unchanged.
 * A target needing none of this is returned as the same string (no allocation).
 *
 * @param target the request target as received (`req.url`)
 * @param encodedSlashes what to do with `%2F`
 * @returns the normalised target, or why it is refused
 */
export function normalizeTarget(target: string, encodedSlashes: EncodedSlashes): string | PathRefusal {
  if (target.charCodeAt(0) !== 47 /* / */) return target
  const hash = target.indexOf('#')
  if (hash >= 0) target = target.slice(0, hash)
  const q = target.indexOf('?')
  const path = q < 0 ? target : target.slice(0, q)
  if (path.indexOf('%') < 0 && path.indexOf('/.') < 0 && path.indexOf('\\') < 0) return target
  let decoded = ''
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c !== 37 /* % */) {
      decoded += path[i]
      continue
    }
    const hi = hexValue(path.charCodeAt(i + 1))
    const lo = hexValue(path.charCodeAt(i + 2))
    if (hi < 0 || lo < 0) return { problem: 'path_bad_encoding', detail: `malformed percent-encoding at offset ${i} of the path` }
    const b = hi * 16 + lo
    if (b === 0) return { problem: 'path_bad_encoding', detail: 'the path encodes a NUL byte (%00)' }
    if (b >= 0xc0 && overlongUtf8(path, i, b)) return { problem: 'path_bad_encoding', detail: `overlong UTF-8 at offset ${i} of the path` }
    if (b === 0x2f && encodedSlashes === 'reject') return { problem: 'path_encoded_slash', detail: 'the path contains an encoded slash (%2F); listeners[].encoded_slashes is reject' }
    decoded += isUnreserved(b) ? String.fromCharCode(b) : `%${HEX[hi]}${HEX[lo]}`
    i += 2
  }
  const segments = decoded.slice(1).split('/')
  const out: string[] = []
  const last = segments.length - 1
  for (let i = 0; i <= last; i++) {
    const s = segments[i]
    if (s === '.') {
      if (i === last) out.push('')
    } else if (s === '..') {
      if (out.length === 0) return { problem: 'path_above_root', detail: 'the path climbs above the root with ".."' }
      out.pop()
      if (i === last) out.push('')
    } else if (ambiguousDotSegment(s)) {
      return { problem: 'path_ambiguous_dot_segment', detail: `the path segment "${s.slice(0, 64)}" is a dot-segment once split at ";", "%2F" or "\\", or decoded again` }
    } else {
      out.push(s)
    }
  }
  const normalized = '/' + out.join('/')
  return q < 0 ? normalized : normalized + target.slice(q)
}
