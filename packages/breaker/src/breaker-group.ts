import { BallastError, metricsTarget, numberOption, objectOption, stringOption } from '@ballast/core'
import { Registry } from 'prom-client'
import { BREAKER_NAME, Breaker, type BreakerOptions } from './breaker.js'
import { instruments } from './breaker-metrics.js'

const OWNER = 'BreakerGroup'

/** Options of {@link BreakerGroup}: a {@link Breaker}'s options plus the key bounds. */
export interface BreakerGroupOptions<F = never> extends BreakerOptions<F> {
  /** Most keys kept at once; the least recently used is evicted beyond. Default 100. */
  maxKeys?: number
  /** A key unused for this many ms is evicted (its breaker disposed, its series removed). Default 300 000. */
  idleTimeout?: number
}

interface Entry<F> {
  readonly breaker: Breaker<F>
  lastUsed: number
}

/**
 * Keyed breakers, one per key (per upstream host, per tenant…), created on first
 * use with the same options. Bounded: beyond `maxKeys` the least recently used
 * idle key is evicted, and keys unused for `idleTimeout` are evicted by a
 * periodic sweep; eviction disposes the breaker and removes its metric series.
 * The `breaker` label is `name:key`, so keys must be low-cardinality and match
 * `[A-Za-z0-9_.:-]` (never take them from raw request data).
 *
 * @example
 * ```ts
 * const hosts = new BreakerGroup({ name: 'upstream', timeout: 800, maxKeys: 50 })
 * const url = new URL(target)
 * const body = await hosts.get(url.host).execute(({ signal }) => fetch(url, { signal }).then((r) => r.text()))
 * ```
 */
export class BreakerGroup<F = never> implements Disposable {
  readonly name: string
  readonly #options: BreakerOptions<F>
  readonly #maxKeys: number
  readonly #idleTimeout: number
  // Map iteration order is insertion order: re-inserting on use makes it an LRU.
  readonly #entries = new Map<string, Entry<F>>()
  #sweeper: NodeJS.Timeout | undefined = undefined
  #disposed = false

  constructor(options: BreakerGroupOptions<F>) {
    const opts = objectOption<BreakerGroupOptions<F>>(OWNER, 'options', options)
    if (opts === undefined) throw new TypeError(`${OWNER}: option "options" must be an object, got undefined`)
    if (opts.name === undefined) throw new TypeError(`${OWNER}: option "name" must be a string matching ${BREAKER_NAME}, got undefined`)
    this.name = stringOption(OWNER, 'name', opts.name, undefined, BREAKER_NAME) as string
    this.#maxKeys = numberOption(OWNER, 'maxKeys', opts.maxKeys, 100, { min: 1, max: 10_000, integer: true })
    this.#idleTimeout = numberOption(OWNER, 'idleTimeout', opts.idleTimeout, 300_000, { min: 1, max: 2 ** 31 - 1 })
    const { maxKeys: _maxKeys, idleTimeout: _idleTimeout, ...breakerOptions } = opts
    this.#options = breakerOptions
    // Validate the shared breaker options now rather than at the first get(). The probe
    // registers on a throwaway registry: on the caller's, its dispose would remove the
    // series of any breaker already named like the group (a client with baseUrl, say).
    const probe = new Breaker<F>({ ...breakerOptions, name: this.name, registry: new Registry() })
    probe[Symbol.dispose]()
    // The caller's registry and prefix are still checked now: the metric families are
    // created (no series) and a name taken by an incompatible metric throws here.
    instruments(
      metricsTarget(OWNER, {
        ...(opts.registry === undefined ? {} : { registry: opts.registry }),
        ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }),
      }),
    )
  }

  /** Keys currently held. */
  get size(): number {
    return this.#entries.size
  }

  /** Currently held keys, least recently used first. */
  keys(): string[] {
    return [...this.#entries.keys()]
  }

  /** The breaker of `key`, created on first use. */
  get(key: string): Breaker<F> {
    if (this.#disposed) {
      throw new BallastError(`${OWNER} "${this.name}" is disposed`, { code: 'BALLAST_BREAKER_DISPOSED', status: 503 })
    }
    const entries = this.#entries
    const now = Date.now()
    const found = entries.get(key)
    if (found !== undefined) {
      found.lastUsed = now
      entries.delete(key)
      entries.set(key, found)
      return found.breaker
    }
    const name = `${this.name}:${key}`
    if (typeof key !== 'string' || !BREAKER_NAME.test(name)) {
      throw new RangeError(`${OWNER}: key must make "${this.name}:<key>" match ${BREAKER_NAME}, got ${JSON.stringify(key)}`)
    }
    this.#sweep(now)
    while (entries.size >= this.#maxKeys && this.#evictOne()) {
      // evicted the least recently used idle key
    }
    const breaker = new Breaker<F>({ ...this.#options, name })
    entries.set(key, { breaker, lastUsed: now })
    this.#startSweeper()
    return breaker
  }

  /** Disposes and forgets `key`'s breaker. */
  delete(key: string): boolean {
    const entry = this.#entries.get(key)
    if (entry === undefined) return false
    this.#entries.delete(key)
    entry.breaker[Symbol.dispose]()
    if (this.#entries.size === 0) this.#stopSweeper()
    return true
  }

  /** Disposes every breaker and the sweep timer. */
  [Symbol.dispose](): void {
    this.#disposed = true
    this.#stopSweeper()
    for (const key of [...this.#entries.keys()]) this.delete(key)
  }

  #evictOne(): boolean {
    // Prefer the least recently used key with nothing in flight; if every key is
    // busy, the oldest goes anyway so the bound holds.
    let victim: string | undefined
    for (const [key, entry] of this.#entries) {
      if (entry.breaker.running === 0) {
        victim = key
        break
      }
    }
    victim ??= this.#entries.keys().next().value
    return victim !== undefined && this.delete(victim)
  }

  #sweep(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (now - entry.lastUsed < this.#idleTimeout) break
      if (entry.breaker.running === 0) this.delete(key)
    }
  }

  #startSweeper(): void {
    if (this.#sweeper !== undefined) return
    const period = Math.max(1_000, Math.min(this.#idleTimeout, 60_000))
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), period)
    this.#sweeper.unref()
  }

  #stopSweeper(): void {
    if (this.#sweeper === undefined) return
    clearInterval(this.#sweeper)
    this.#sweeper = undefined
  }
}
