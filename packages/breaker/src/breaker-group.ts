import { BallastError, ClockTimer, describeValue, metricsTarget, numberOption, objectOption, stringOption } from '@ballast/core'
import { Registry } from 'prom-client'
import { BREAKER_NAME, BREAKER_OPTIONS, Breaker, type BreakerOptions, callsInFlight } from './breaker.js'
import { instruments } from './breaker-metrics.js'

const OWNER = 'BreakerGroup'

/**
 * The option names a {@link BreakerGroup} takes: a {@link Breaker}'s plus its key
 * bounds. Any other name is refused at construction.
 *
 * @example
 * ```ts
 * BREAKER_GROUP_OPTIONS.includes('maxKeys') // true
 * ```
 */
export const BREAKER_GROUP_OPTIONS: readonly string[] = [...BREAKER_OPTIONS, 'maxKeys', 'idleTimeout']

/**
 * Options of {@link BreakerGroup}: a {@link Breaker}'s options plus the key bounds.
 *
 * @example
 * ```ts
 * const options: BreakerGroupOptions = { name: 'webhooks', timeout: 1_000, maxKeys: 200, idleTimeout: 60_000 }
 * const perHost = new BreakerGroup(options)
 * ```
 */
export interface BreakerGroupOptions<F = never> extends BreakerOptions<F> {
  /**
   * Most keys kept at once; the least recently used is evicted beyond. A key
   * evicted with calls in flight lets them finish before its breaker is disposed.
   * Default 100.
   */
  maxKeys?: number | undefined
  /** A key unused for this many ms is evicted (its breaker disposed, its series removed). Default 300 000. */
  idleTimeout?: number | undefined
}

interface Entry<F> {
  readonly breaker: Breaker<F>
  lastUsed: number
}

/**
 * Keyed breakers, one per key (per upstream host, per tenant…), created on first
 * use with the same options. Bounded: beyond `maxKeys` the least recently used
 * key is evicted (an idle one if there is one), and keys unused for
 * `idleTimeout` are evicted by a periodic sweep; eviction disposes the breaker
 * and removes its metric series. A key evicted while calls run on it is
 * disposed once they settle, so eviction never fails a call in flight; used
 * again before that, it comes back with its state.
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
  // Evicted with calls in flight: out of the bound, disposed once idle. Holds at
  // most as many keys as there are calls in flight, and almost always none.
  readonly #retiring = new Map<string, Entry<F>>()
  // The sweep: a timer re-armed after each sweep while keys are held (an interval ticked
  // for ever under fake timers' runAll), on the setTimeout in place when it started. Its
  // clock is Date.now() at the last sweep, or one period past the sweep before when
  // Date.now() is behind that (fake timers that leave Date real): every sweep counts a
  // period, so idle keys go under any fake clock.
  readonly #sweeper = new ClockTimer<BreakerGroup<F>>(BreakerGroup.#onSweep, this)
  #swept = 0
  #disposed = false

  constructor(options: BreakerGroupOptions<F>) {
    const opts = objectOption<BreakerGroupOptions<F>>(OWNER, 'options', options, BREAKER_GROUP_OPTIONS)
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

  /** Keys currently held, `<= maxKeys` (evicted keys still finishing calls are not counted). */
  get size(): number {
    return this.#entries.size
  }

  /** Currently held keys, least recently used first (evicted keys still finishing calls are not listed). */
  keys(): string[] {
    return [...this.#entries.keys()]
  }

  /** The breaker of `key`, created on first use. */
  get(key: string): Breaker<F> {
    if (this.#disposed) {
      throw new BallastError(`${OWNER} "${this.name}" is disposed`, { code: 'BALLAST_BREAKER_DISPOSED', status: 503 })
    }
    const entries = this.#entries
    const now = this.#now()
    if (this.#retiring.size !== 0) this.#reap()
    const found = entries.get(key)
    if (found !== undefined) {
      found.lastUsed = now
      entries.delete(key)
      entries.set(key, found)
      if (!this.#sweeper.current) this.#startSweeper()
      return found.breaker
    }
    if (typeof key !== 'string') throw new TypeError(`${OWNER}: key must be a string, got ${describeValue(key)}`)
    const name = `${this.name}:${key}`
    if (!BREAKER_NAME.test(name)) {
      throw new RangeError(`${OWNER}: key must make "${this.name}:<key>" match ${BREAKER_NAME}, got ${describeValue(key)}`)
    }
    this.#sweep(now)
    while (entries.size >= this.#maxKeys) this.#evictOne()
    // A key evicted while busy comes back as it was: one breaker (and one set of series) per key.
    const retired = this.#retiring.get(key)
    this.#retiring.delete(key)
    const entry = retired ?? { breaker: new Breaker<F>({ ...this.#options, name }), lastUsed: now }
    entry.lastUsed = now
    entries.set(key, entry)
    this.#startSweeper()
    return entry.breaker
  }

  /** Disposes and forgets `key`'s breaker, at once, even with calls in flight (they fail with `BALLAST_BREAKER_DISPOSED`). */
  delete(key: string): boolean {
    const entry = this.#entries.get(key) ?? this.#retiring.get(key)
    if (entry === undefined) return false
    this.#entries.delete(key)
    this.#retiring.delete(key)
    entry.breaker[Symbol.dispose]()
    this.#stopSweeperIfEmpty()
    return true
  }

  /** Disposes every breaker and the sweep timer. */
  [Symbol.dispose](): void {
    this.#disposed = true
    this.#stopSweeper()
    for (const key of [...this.#entries.keys(), ...this.#retiring.keys()]) this.delete(key)
  }

  #evictOne(): void {
    // The least recently used key with nothing in flight; if every key is busy,
    // the least recently used retires: out of the bound now, disposed when idle.
    for (const [key, entry] of this.#entries) {
      if (callsInFlight(entry.breaker) === 0) {
        this.delete(key)
        return
      }
    }
    const [key, entry] = this.#entries.entries().next().value as [string, Entry<F>]
    this.#entries.delete(key)
    this.#retiring.set(key, entry)
  }

  #reap(): void {
    for (const [key, entry] of this.#retiring) {
      if (callsInFlight(entry.breaker) === 0) this.delete(key)
    }
  }

  #sweep(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (now - entry.lastUsed < this.#idleTimeout) break
      if (callsInFlight(entry.breaker) === 0) this.delete(key)
    }
  }

  /**
   * Date.now(), never behind the sweep's clock: with fake timers that leave Date
   * real, a key used between two sweeps is idle from the last one.
   */
  #now(): number {
    return Math.max(Date.now(), this.#swept)
  }

  #period(): number {
    return Math.max(1_000, Math.min(this.#idleTimeout, 60_000))
  }

  /** Starts the sweep, or moves it to the clock in place now (fake timers installed or removed since). */
  #startSweeper(): void {
    if (this.#sweeper.current) return
    this.#swept = Date.now()
    this.#sweeper.start(this.#period())
  }

  static #onSweep<F>(group: BreakerGroup<F>): void {
    group.#swept = Math.max(Date.now(), group.#swept + group.#period())
    group.#reap()
    group.#sweep(group.#swept)
    // Not when the sweep emptied the group (stopped) or a listener moved it to another clock.
    group.#sweeper.again(group.#period())
  }

  #stopSweeperIfEmpty(): void {
    if (this.#entries.size === 0 && this.#retiring.size === 0) this.#stopSweeper()
  }

  #stopSweeper(): void {
    this.#sweeper.stop()
    this.#swept = 0
  }
}
