/**
 * Request IDs: random UUIDs (RFC 9562 §5.4, version 4) made without `node:crypto`.
 *
 * Why not `crypto.randomUUID()`: loading `node:crypto` initialises OpenSSL, about 5 MB of
 * RSS per process (bench/memory.ts), for an ID that only has to be unique, not secret.
 * `Math.random` (V8's xorshift128+, seeded from the OS at start) gives 122 random bits
 * in four draws; collisions are as unlikely as with the crypto source.
 */

const HEX: string[] = []
for (let i = 0; i < 256; i++) HEX.push((i + 0x100).toString(16).slice(1))

/** A random version-4 UUID, lowercase, e.g. `0f8fad5b-d9cb-469f-a165-70867728950e`. */
export function randomRequestId(): string {
  // Four 32-bit draws; (x * 2^32) >>> 0 keeps the top 32 bits of each 52-bit random.
  const a = (Math.random() * 0x100000000) >>> 0
  const b = (Math.random() * 0x100000000) >>> 0
  const c = (Math.random() * 0x100000000) >>> 0
  const d = (Math.random() * 0x100000000) >>> 0
  return HEX[a >>> 24] + HEX[(a >>> 16) & 0xff] + HEX[(a >>> 8) & 0xff] + HEX[a & 0xff] + '-'
    + HEX[b >>> 24] + HEX[(b >>> 16) & 0xff] + '-'
    + HEX[((b >>> 8) & 0x0f) | 0x40] + HEX[b & 0xff] + '-'
    + HEX[((c >>> 24) & 0x3f) | 0x80] + HEX[(c >>> 16) & 0xff] + '-'
    + HEX[(c >>> 8) & 0xff] + HEX[c & 0xff] + HEX[d >>> 24] + HEX[(d >>> 16) & 0xff] + HEX[(d >>> 8) & 0xff] + HEX[d & 0xff]
}
