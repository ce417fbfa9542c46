/**
 * Bounded byte storage for request and response buffering: bytes are held in memory up to a
 * size, then appended to a temporary file, within per-store and process-wide caps
 * (nginx `client_body_buffer_size`/`proxy_buffers` then `*_temp_path`, with
 * `proxy_max_temp_file_size`).
 *
 * A temporary file is unlinked as soon as it is opened: only its descriptor names it, so
 * the kernel reclaims its space when the store is closed, and also when the process dies.
 */
import fs from 'node:fs'
import { nodeCrypto } from '../lib/lazy-builtins.ts'
import path from 'node:path'

/** Sizes of buffering, all in bytes (config `buffering`). */
export interface BufferLimits {
  /** Bytes one store holds in memory before it spills to a temporary file. */
  memory: number
  /** Largest temporary file of one store. */
  maxTempFile: number
  /** Memory held by every store of the process together; beyond it stores spill at once. */
  maxMemoryTotal: number
  /** Bytes in temporary files of every store of the process together. */
  maxTempTotal: number
  /** Directory of the temporary files (created when missing). */
  tempDir: string
}

/**
 * What every store of a process holds, against {@link BufferLimits}: one object per
 * gateway, read by the stores and by metrics.
 */
export class BufferBudget {
  limits: BufferLimits
  /** Bytes held in memory by all stores now. */
  memory = 0
  /** Bytes in temporary files of all stores now. */
  temp = 0
  /** Temporary files open now. */
  files = 0
  /** Temporary files created since start (a spill each). */
  spills = 0
  #dirReady: string | null = null

  constructor(limits: BufferLimits) {
    this.limits = limits
  }

  /**
   * Creates `tempDir` when missing and checks that a temporary file can be made there
   * (at start and on reload, so that a bad directory is found before a request needs it).
   * @throws {Error} when the directory cannot be created or written
   */
  checkTempDir(): void {
    const dir = this.limits.tempDir
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    const file = path.join(dir, `portico-${process.pid}-check`)
    fs.closeSync(fs.openSync(file, 'w', 0o600))
    fs.unlinkSync(file)
    this.#dirReady = dir
  }

  /**
   * Opens a new temporary file in `tempDir` and unlinks it at once (see the module doc),
   * off the event loop.
   */
  openTempFile(cb: (err: Error | null, fd: number) => void): void {
    const dir = this.limits.tempDir
    if (this.#dirReady !== dir) {
      try {
        this.checkTempDir()
      } catch (err) {
        return cb(err as Error, -1)
      }
    }
    const file = path.join(dir, `portico-${process.pid}-${nodeCrypto().randomBytes(6).toString('hex')}`)
    fs.open(file, 'wx+', 0o600, (err, fd) => {
      if (err) return cb(err, -1)
      fs.unlink(file, (unlinkErr) => {
        if (unlinkErr) return fs.close(fd, () => cb(unlinkErr, -1))
        this.files++
        this.spills++
        cb(null, fd)
      })
    })
  }
}

/** Most bytes read back from a temporary file at once. */
const READ_CHUNK = 64 * 1024
/** Bytes waiting to be written to the file beyond which `append` asks its caller to pause. */
const WRITE_HIGH_WATER = 256 * 1024

/**
 * An append-only run of bytes: the first ones in memory, the rest in a temporary file.
 * Read back in order by {@link read}; a store that is read once (`replayable` false)
 * releases its memory chunks as they are read.
 *
 * Not thread-safe across concurrent readers of a non-replayable store: read it from one place.
 */
export class SpillStore {
  readonly #budget: BufferBudget
  readonly #replayable: boolean
  /** Memory chunks, the bytes [#memStart, #memEnd) of the store. */
  #chunks: Buffer[] = []
  #memStart = 0
  #memEnd = 0
  /** Bytes in memory now (counted in the budget). */
  #held = 0
  #fd = -1
  #spilled = false
  /** The temporary file is being opened. */
  #opening = false
  /** Where the file part starts in the store (bytes before it are in memory). */
  #fileStart = 0
  /** Bytes appended to the file part (counted in the budget). */
  #tempBytes = 0
  /** Bytes of the file written (and readable). */
  #fileWritten = 0
  /** Chunks appended to the file part, not yet written. */
  #pending: Buffer[] = []
  #pendingBytes = 0
  #writing = false
  #readers = 0
  #closed = false
  #onWritable: (() => void) | null = null
  #onFlushed: (() => void) | null = null
  /** Set when a file write failed; reads and appends fail with it. */
  error: Error | null = null
  /** Bytes appended so far. */
  size = 0

  /** @param replayable keep every byte until {@link close} (a request body read by each try) */
  constructor(budget: BufferBudget, replayable: boolean) {
    this.#budget = budget
    this.#replayable = replayable
  }

  /** Whether bytes went to a temporary file. */
  get spilled(): boolean {
    return this.#spilled
  }

  /** Bytes appended and not yet readable (file writes in progress). */
  get unwritten(): number {
    return this.#pendingBytes
  }

  /**
   * Whether `n` more bytes fit within the per-store and process-wide caps.
   */
  fits(n: number): boolean {
    const l = this.#budget.limits
    if (!this.#spilled && this.#held + n <= l.memory && this.#budget.memory + n <= l.maxMemoryTotal) return true
    return this.#tempBytes + n <= l.maxTempFile && this.#budget.temp + n <= l.maxTempTotal
  }

  /**
   * Appends a chunk (call {@link fits} first). Memory first; once the memory share is used,
   * every later byte goes to the file, so bytes stay in order.
   *
   * @param onWritable called once the file writes caught up, when this returns false
   * @returns false when the caller should pause until `onWritable` (file writes lag behind);
   *   a failure of the temporary file shows in {@link error} (`onWritable` is called then too)
   */
  append(chunk: Buffer, onWritable?: () => void): boolean {
    if (this.#closed || this.error !== null) return true
    const l = this.#budget.limits
    const n = chunk.length
    if (!this.#spilled && this.#held + n <= l.memory && this.#budget.memory + n <= l.maxMemoryTotal) {
      this.size += n
      this.#chunks.push(chunk)
      this.#memEnd += n
      this.#held += n
      this.#budget.memory += n
      return true
    }
    if (!this.#spilled) {
      this.#spilled = true
      this.#fileStart = this.#memEnd
      this.#opening = true
      this.#budget.openTempFile(this.#onOpen)
    }
    this.size += n
    this.#budget.temp += n
    this.#tempBytes += n
    this.#pending.push(chunk)
    this.#pendingBytes += n
    this.#flush()
    if (this.#pendingBytes <= WRITE_HIGH_WATER) return true
    this.#onWritable = onWritable ?? null
    return false
  }

  #onOpen = (err: Error | null, fd: number): void => {
    this.#opening = false
    if (this.#closed) {
      if (fd >= 0) {
        this.#budget.files--
        fs.close(fd, () => {})
      }
      return
    }
    if (err !== null) {
      this.error = err
      this.#wake()
      return
    }
    this.#fd = fd
    this.#flush()
  }

  /** Tells the waiting writer and the flush waiter (after a failure, so they see {@link error}). */
  #wake(): void {
    const w = this.#onWritable
    const f = this.#onFlushed
    this.#onWritable = null
    this.#onFlushed = null
    w?.()
    f?.()
  }

  #flush(): void {
    if (this.#writing || this.#fd < 0 || this.#pending.length === 0 || this.#closed || this.error !== null) return
    this.#writing = true
    const bufs = this.#pending
    const n = this.#pendingBytes
    this.#pending = []
    this.#pendingBytes = 0
    fs.writev(this.#fd, bufs, this.#fileWritten, (err) => {
      this.#writing = false
      if (this.#closed) return this.#release()
      if (err) {
        this.error = err
        return this.#wake()
      }
      this.#fileWritten += n
      this.#flush()
      if (this.#pendingBytes <= WRITE_HIGH_WATER && this.#onWritable !== null) {
        const cb = this.#onWritable
        this.#onWritable = null
        cb()
      }
      if (!this.#writing && this.#onFlushed !== null) {
        const cb = this.#onFlushed
        this.#onFlushed = null
        cb()
      }
    })
  }

  /** Calls `cb` once every byte appended is readable (file writes done, or failed: see {@link error}). */
  flushed(cb: () => void): void {
    if (this.error !== null || (!this.#writing && !this.#opening && this.#pendingBytes === 0)) return cb()
    this.#onFlushed = cb
  }

  /**
   * Reads the bytes from `position` on, up to `max` bytes: from memory at once, from the
   * file asynchronously. Calls back with an empty buffer when nothing is readable yet at
   * `position` (all bytes read, or file writes still in progress).
   */
  read(position: number, max: number, cb: (err: Error | null, bytes: Buffer) => void): void {
    if (this.error !== null) return cb(this.error, EMPTY)
    if (this.#closed) return cb(new Error('buffer closed'), EMPTY)
    if (position < this.#memEnd) return cb(null, this.#readMemory(position, max))
    const fileOffset = position - this.#fileStart
    const available = this.#fileWritten - fileOffset
    if (this.#fd < 0 || available <= 0) return cb(null, EMPTY)
    const n = Math.min(available, max, READ_CHUNK)
    const buf = Buffer.allocUnsafe(n)
    this.#readers++
    fs.read(this.#fd, buf, 0, n, fileOffset, (err, got) => {
      this.#readers--
      if (this.#closed) {
        this.#release()
        return cb(err ?? new Error('buffer closed'), EMPTY)
      }
      cb(err, err ? EMPTY : buf.subarray(0, got))
    })
  }

  #readMemory(position: number, max: number): Buffer {
    // Chunks are few (memory share / chunk size): a walk from the first is cheap.
    let at = this.#memStart
    for (let i = 0; i < this.#chunks.length; i++) {
      const c = this.#chunks[i]
      if (position < at + c.length) {
        const from = position - at
        const out = from === 0 && c.length <= max ? c : c.subarray(from, from + max)
        if (!this.#replayable && from + out.length === c.length) {
          // Read once: the chunks before this one are read too; release them.
          this.#chunks.splice(0, i + 1)
          const freed = at + c.length - this.#memStart
          this.#memStart = at + c.length
          this.#held -= freed
          this.#budget.memory -= freed
        }
        return out
      }
      at += c.length
    }
    return EMPTY
  }

  /** Frees the memory and the temporary file (at once, or when reads and writes in progress end). Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#budget.memory -= this.#held
    this.#held = 0
    this.#chunks = []
    this.#budget.temp -= this.#tempBytes
    this.#tempBytes = 0
    this.#pending = []
    this.#pendingBytes = 0
    this.#onWritable = null
    this.#onFlushed = null
    this.#release()
  }

  #release(): void {
    if (this.#fd < 0 || this.#writing || this.#readers > 0) return
    const fd = this.#fd
    this.#fd = -1
    this.#budget.files--
    fs.close(fd, () => {})
  }
}

const EMPTY = Buffer.alloc(0)
