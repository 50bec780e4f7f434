import {
  BallastError,
  describeValue,
  functionOption,
  LiveList,
  type MetricsOptions,
  metricsTarget,
  numberOption,
  objectOption,
  stringOption,
  timerDelay,
} from '@ballast/core'
import { ClientClosedError, Deadline, DeadlineCancelledError, DeadlineExceededError } from '@ballast/deadline'
import { Attempt, type AttemptHost, type CallContext } from './attempt.js'
import { AttemptTimeouts } from './attempt-timeouts.js'
import { BreakerMetrics, type BreakerObserver, type CallOutcome, type StateLabel } from './breaker-metrics.js'
import { BrokenCircuitError, type RejectionReason, withCause } from './errors.js'
import { BreakerEvent, type Listener } from './events.js'
import { type OpenedCircuit, type OpossumCircuit, openCircuit } from './opossum.js'

export type { CallContext } from './attempt.js'

const OWNER = 'Breaker'
const EXECUTE = `${OWNER}.execute`
const WRAP = `${OWNER}.wrap`
/** The option names of {@link Breaker} (a {@link BreakerGroup} adds its key bounds). */
export const BREAKER_OPTIONS: readonly string[] = [
  'name',
  'timeout',
  'errorThresholdPercentage',
  'volumeThreshold',
  'resetTimeout',
  'rollingCountTimeout',
  'rollingCountBuckets',
  'capacity',
  'retry',
  'isFailure',
  'fallback',
  'registry',
  'prefix',
]
/**
 * Allowed breaker names: they become the `breaker` metric label.
 *
 * @example
 * ```ts
 * BREAKER_NAME.test('inventory:api.example.com') // true
 * ```
 */
export const BREAKER_NAME = /^[A-Za-z0-9_.:-]{1,64}$/

/**
 * The state of a breaker, as opossum has it. `disabled` once disposed.
 *
 * @example
 * ```ts
 * const state: BreakerState = breaker.state
 * if (state !== 'closed') log.warn({ state }, 'inventory degraded')
 * ```
 */
export type BreakerState = 'closed' | 'open' | 'half-open' | 'disabled'

/**
 * Why the fallback runs.
 *
 * @example
 * ```ts
 * const why: Record<FallbackReason, string> = {
 *   open: 'down', 'half-open': 'recovering', capacity: 'busy', timeout: 'slow', failure: 'failing', deadline: 'out of time',
 * }
 * ```
 */
export type FallbackReason = RejectionReason | 'timeout' | 'failure' | 'deadline'

/**
 * What a fallback receives.
 *
 * @example
 * ```ts
 * const fallback = ({ reason, retryAfter }: FallbackContext) => ({ items: [], degraded: reason, retryAfter })
 * ```
 */
export interface FallbackContext {
  /** `open`, `half-open`, `capacity`: refused without running; `timeout`, `failure`: the (last) attempt failed; `deadline`: the caller's deadline expired or the client went away. */
  readonly reason: FallbackReason
  /** The error the caller would get without a fallback. */
  readonly error: unknown
  /** The caller's deadline signal (without a deadline, one of this call's own that never aborts): for fallbacks that do I/O. */
  readonly signal: AbortSignal
  /** Seconds until a trial call is allowed; 0 when closed. */
  readonly retryAfter: number
}

/**
 * Retry policy: `attempts` retries after the first try.
 *
 * @example
 * ```ts
 * const retry: RetryOptions = { attempts: 2, delay: 100 } // up to 3 tries, 100 ms apart
 * const inventory = new Breaker({ name: 'inventory', retry })
 * ```
 */
export interface RetryOptions {
  /** Retries after the first try (1 = try twice). */
  attempts: number
  /** Milliseconds between attempts. Default 0. */
  delay?: number | undefined
}

/**
 * Options of {@link Breaker}; see the README for the defaults.
 *
 * @example
 * ```ts
 * const options: BreakerOptions<null> = { name: 'inventory', timeout: 800, fallback: () => null }
 * ```
 */
export interface BreakerOptions<F = never> extends MetricsOptions {
  /** Required, `[A-Za-z0-9_.:-]{1,64}`; the `breaker` metric label. */
  name: string
  /** Per-attempt budget in ms, always capped by `Deadline.current()`; `false` for none. Default 10 000. */
  timeout?: number | false | undefined
  /** Open when the failure percentage in the window is above this. Default 50. */
  errorThresholdPercentage?: number | undefined
  /** No trip before this many calls in the window. Default 20. */
  volumeThreshold?: number | undefined
  /** Open → half-open after this many ms. Default 10 000. */
  resetTimeout?: number | undefined
  /** Rolling window length in ms. Default 10 000. */
  rollingCountTimeout?: number | undefined
  /** Buckets in the window. Default 10. */
  rollingCountBuckets?: number | undefined
  /** Maximum concurrent executions (until the work settles). Default unlimited. */
  capacity?: number | undefined
  /** Retries, only while closed and while the deadline leaves budget. Default none. */
  retry?: RetryOptions | undefined
  /** Which errors count as dependency failures. Default: all but caller-side aborts. */
  isFailure?: ((error: unknown) => boolean) | undefined
  /** Default fallback of every call that names none. */
  fallback?: ((context: FallbackContext) => F | PromiseLike<F>) | undefined
}

/**
 * A state transition.
 *
 * @example
 * ```ts
 * breaker.onStateChange(({ from, to }: StateChangeEvent) => log.warn(`inventory breaker: ${from} -> ${to}`))
 * ```
 */
export interface StateChangeEvent {
  readonly from: BreakerState
  readonly to: BreakerState
}

/**
 * A call refused without running.
 *
 * @example
 * ```ts
 * breaker.onReject(({ reason, error }: RejectEvent) => log.warn({ reason, retryAfter: error.headers?.['retry-after'] }, 'refused'))
 * ```
 */
export interface RejectEvent {
  readonly reason: RejectionReason
  readonly error: BrokenCircuitError
}

/**
 * A fallback ran.
 *
 * @example
 * ```ts
 * breaker.onFallback(({ reason, result }: FallbackEvent) => log.info({ reason, result }, 'served a fallback'))
 * ```
 */
export interface FallbackEvent {
  readonly reason: FallbackReason
  readonly error: unknown
  readonly result: 'success' | 'failure'
}

/**
 * Per-call options of {@link Breaker.execute}.
 *
 * @example
 * ```ts
 * const options: ExecuteOptions<number> = { fallback: () => cachedStock }
 * const stock = await breaker.execute(({ signal }) => fetchStock(signal), options)
 * ```
 */
export interface ExecuteOptions<T> {
  /** Replaces the breaker's fallback for this call. */
  fallback?: ((context: FallbackContext) => T | PromiseLike<T>) | undefined
}

/**
 * The default `isFailure`: everything except the caller giving up
 * (`DeadlineExceededError`, `ClientClosedError`, and a `DeadlineCancelledError`
 * that is `disposed`: work still running when its request was answered). A
 * deadline the work cancels itself (`cancel()`, say to stop siblings after a
 * failure) is counted like any other error. Compose it in your own.
 *
 * @example
 * ```ts
 * const breaker = new Breaker({
 *   name: 'payments',
 *   isFailure: (error) => isDependencyFailure(error) && !(error instanceof ValidationError),
 * })
 * ```
 */
export function isDependencyFailure(error: unknown): boolean {
  // Node's own APIs (timers/promises, events, streams, fs, child_process) reject an aborted
  // operation with an AbortError whose `cause` is the signal's reason.
  const reason = error instanceof Error && error.name === 'AbortError' && error.cause !== undefined ? error.cause : error
  return !(
    reason instanceof DeadlineExceededError ||
    reason instanceof ClientClosedError ||
    (reason instanceof DeadlineCancelledError && reason.disposed)
  )
}

// Set in a static block of Breaker: BreakerGroup disposes a key only once its calls have settled.
let callsOf: (breaker: Breaker<unknown>) => number

/** Calls through `breaker` not settled yet (attempts, retry pauses, fallbacks). Internal to the package. */
export function callsInFlight<F>(breaker: Breaker<F>): number {
  return callsOf(breaker as Breaker<unknown>)
}

/**
 * The fallback a call's options carry. Anything but an options object, and any
 * name but `fallback` (a misspelt one would leave the call without its fallback,
 * silently), is refused.
 */
function callFallback(owner: string, options: unknown): AnyFallback {
  const given = objectOption<{ fallback?: unknown }>(owner, 'options', options, ['fallback'])
  return functionOption<(context: FallbackContext) => unknown>(owner, 'fallback', given?.fallback)
}

function toStateLabel(state: BreakerState): StateLabel {
  return state === 'half-open' ? 'half_open' : state
}

type Work = (context: CallContext) => PromiseLike<unknown>
type AnyFallback = ((context: FallbackContext) => unknown) | undefined

/**
 * A circuit breaker with fallbacks, built on one opossum circuit.
 *
 * Every call gets its own AbortController linked to `Deadline.current()`; the
 * attempt budget is `min(timeout, deadline remaining)`. Attempt timeouts and
 * errors accepted by `isFailure` count toward tripping; the caller's own deadline
 * expiring or its client leaving do not. Half-open lets exactly one trial call
 * through and refuses the rest at once. Metrics (section 4) are registered on the
 * first construction, never on import.
 *
 * @example
 * ```ts
 * const inventory = new Breaker({
 *   name: 'inventory',
 *   timeout: 800,
 *   volumeThreshold: 20,
 *   errorThresholdPercentage: 50,
 *   retry: { attempts: 1 },
 *   fallback: () => cachedStock,
 * })
 * const stock = await inventory.execute(({ signal }) => fetch(url, { signal }).then((r) => r.json()))
 * ```
 */
export class Breaker<F = never> implements Disposable {
  /** The breaker's name (its metric label). */
  readonly name: string

  readonly #timeout: number | false
  readonly #resetTimeout: number
  readonly #capacity: number
  readonly #retries: number
  readonly #retryDelay: number
  readonly #fallback: AnyFallback
  readonly #opened: OpenedCircuit<Attempt>
  readonly #circuit: OpossumCircuit<Attempt>
  readonly #observer: BreakerObserver
  readonly #host: AttemptHost
  #timeouts: AttemptTimeouts<Attempt> | undefined
  readonly #live = new LiveList<Attempt>()
  readonly #pauses = new Set<() => void>()
  #running = 0
  // Calls not settled yet: attempts, retry pauses and fallbacks (a BreakerGroup keeps a busy key).
  #calls = 0
  #openedAt = 0
  #state: BreakerState = 'closed'
  #disposed = false

  static {
    callsOf = (breaker) => breaker.#calls
  }

  readonly #stateChange = new BreakerEvent<StateChangeEvent>()
  readonly #open = new BreakerEvent<void>()
  readonly #halfOpen = new BreakerEvent<void>()
  readonly #close = new BreakerEvent<void>()
  readonly #reject = new BreakerEvent<RejectEvent>()
  readonly #fallbackEvent = new BreakerEvent<FallbackEvent>()

  constructor(options: BreakerOptions<F>) {
    const opts = objectOption<BreakerOptions<F>>(OWNER, 'options', options, BREAKER_OPTIONS)
    if (opts === undefined) throw new TypeError(`${OWNER}: option "options" must be an object, got undefined`)
    if (opts.name === undefined) throw new TypeError(`${OWNER}: option "name" must be a string matching ${BREAKER_NAME}, got undefined`)
    this.name = stringOption(OWNER, 'name', opts.name, undefined, BREAKER_NAME) as string
    const timeout = opts.timeout
    if (timeout !== undefined && timeout !== false && typeof timeout !== 'number') {
      throw new TypeError(`${OWNER}: option "timeout" must be a number >= 1 or false, got ${describeValue(timeout)}`)
    }
    this.#timeout = timeout === false ? false : numberOption(OWNER, 'timeout', timeout, 10_000, { min: 1 })
    // Above 2^31-1 ms a timer cannot be set: the same as no attempt timeout.
    const budget = this.#timeout === false ? undefined : timerDelay(this.#timeout)
    this.#timeouts = budget === undefined ? undefined : new AttemptTimeouts<Attempt>(budget)
    const errorThresholdPercentage = numberOption(OWNER, 'errorThresholdPercentage', opts.errorThresholdPercentage, 50, {
      min: 0,
      max: 100,
    })
    const volumeThreshold = numberOption(OWNER, 'volumeThreshold', opts.volumeThreshold, 20, { min: 0, integer: true })
    this.#resetTimeout = numberOption(OWNER, 'resetTimeout', opts.resetTimeout, 10_000, { min: 1, max: 2 ** 31 - 1 })
    const rollingCountTimeout = numberOption(OWNER, 'rollingCountTimeout', opts.rollingCountTimeout, 10_000, { min: 1, max: 2 ** 31 - 1 })
    const rollingCountBuckets = numberOption(OWNER, 'rollingCountBuckets', opts.rollingCountBuckets, 10, {
      min: 1,
      max: rollingCountTimeout,
      integer: true,
    })
    if (rollingCountTimeout % rollingCountBuckets !== 0) {
      throw new RangeError(
        `${OWNER}: option "rollingCountBuckets" must divide "rollingCountTimeout" (${rollingCountTimeout}), got ${rollingCountBuckets}`,
      )
    }
    this.#capacity = numberOption(OWNER, 'capacity', opts.capacity, Number.POSITIVE_INFINITY, { min: 1, integer: true })
    const retry = objectOption<RetryOptions>(OWNER, 'retry', opts.retry, ['attempts', 'delay'])
    this.#retries = numberOption(OWNER, 'retry.attempts', retry?.attempts, 0, { min: 0, max: 100, integer: true })
    this.#retryDelay = numberOption(OWNER, 'retry.delay', retry?.delay, 0, { min: 0, max: 2 ** 31 - 1 })
    const isFailure = functionOption<(error: unknown) => boolean>(OWNER, 'isFailure', opts.isFailure) ?? isDependencyFailure
    this.#fallback = functionOption<(context: FallbackContext) => unknown>(OWNER, 'fallback', opts.fallback)
    const target = metricsTarget(OWNER, {
      ...(opts.registry === undefined ? {} : { registry: opts.registry }),
      ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }),
    })

    // opossum's own timeout, AbortController, health check, snapshots and
    // latency percentiles stay off: ballast times, cancels and measures each
    // attempt itself, and the window keeps counts only.
    this.#opened = openCircuit<Attempt>((attempt) => attempt.run(), {
      name: this.name,
      timeout: false,
      resetTimeout: this.#resetTimeout,
      errorThresholdPercentage,
      volumeThreshold,
      rollingCountTimeout,
      rollingCountBuckets,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
    })
    const circuit = this.#opened.circuit
    this.#circuit = circuit
    circuit.on('open', () => {
      this.#openedAt = performance.now()
      this.#transition()
    })
    circuit.on('halfOpen', () => this.#transition())
    circuit.on('close', () => {
      // Recovered: the failures that opened the circuit leave the window (refused calls never
      // entered it), so the next failure alone cannot reopen it.
      this.#opened.resetWindow()
      this.#transition()
    })

    const opened = this.#opened
    this.#host = {
      name: this.name,
      isFailure,
      workSettled: () => {
        this.#running--
      },
      ignored: (attempt) => {
        // Neither success nor failure for opossum: take the call back out of the
        // window and hand a half-open trial back.
        if (attempt.bucket !== undefined) attempt.bucket.fires--
        if (attempt.trial && circuit.halfOpen && !circuit.pendingClose) opened.rearmTrial()
      },
    }

    try {
      this.#observer = new BreakerMetrics(target, this.name, errorThresholdPercentage / 100, {
        stateLabel: () => toStateLabel(this.state),
        concurrent: () => this.#running,
        failureRatio: () => {
          if (this.#disposed) return 0
          const { fires, failures } = circuit.status.stats
          return fires > 0 ? Math.min(1, Math.max(0, failures / fires)) : 0
        },
      })
    } catch (error) {
      // A metric name taken by an incompatible metric: no half-built breaker left running.
      this.#opened.shutdown()
      throw error
    }
  }

  /** opossum's state, read live. */
  get state(): BreakerState {
    const circuit = this.#circuit
    if (this.#disposed || circuit.isShutdown || !circuit.enabled) return 'disabled'
    if (circuit.opened) return 'open'
    if (circuit.halfOpen) return 'half-open'
    return 'closed'
  }

  /** Executions in flight (until their work settles, even past a timeout). */
  get running(): number {
    return this.#running
  }

  /**
   * Seconds until a trial call is allowed: 0 when closed or when half-open with
   * the trial free; while open, the rest of `resetTimeout` (at least 1); while a
   * half-open trial is in flight, 1.
   */
  retryAfter(): number {
    const circuit = this.#circuit
    if (this.#disposed) return 0
    if (circuit.opened) return Math.max(1, Math.ceil((this.#openedAt + this.#resetTimeout - performance.now()) / 1000))
    if (circuit.halfOpen && !circuit.pendingClose) return 1
    return 0
  }

  /**
   * Runs `work` through the breaker. Resolves with its value, or with the
   * fallback's when the call is refused, fails, times out or its caller's
   * deadline expires; rejects with the error otherwise (see the README's
   * fallback semantics).
   *
   * @example
   * ```ts
   * const user = await breaker.execute(({ signal }) => db.query(sql, { signal }), {
   *   fallback: ({ reason }) => ({ id, name: 'unknown', degraded: reason }),
   * })
   * ```
   */
  execute<T>(
    work: (context: CallContext) => PromiseLike<T>,
    options: ExecuteOptions<T> & { fallback: (context: FallbackContext) => T | PromiseLike<T> },
  ): Promise<T>
  execute<T>(work: (context: CallContext) => PromiseLike<T>, options?: ExecuteOptions<T>): Promise<T | F>
  execute<T>(work: (context: CallContext) => PromiseLike<T>, options?: ExecuteOptions<T>): Promise<T | F> {
    if (typeof work !== 'function')
      return Promise.reject(new TypeError(`${OWNER}.execute: work must be a function, got ${describeValue(work)}`))
    let fallback: AnyFallback
    if (options !== undefined) {
      try {
        fallback = callFallback(EXECUTE, options)
      } catch (error) {
        return Promise.reject(error)
      }
    }
    return this.#run(work as Work, fallback ?? this.#fallback) as Promise<T | F>
  }

  /**
   * Wraps `fn` so every call goes through the breaker; the fallback also gets
   * the call's arguments.
   *
   * @example
   * ```ts
   * const getStock = breaker.wrap(
   *   ({ signal }, sku: string) => fetch(`${base}/stock/${sku}`, { signal }).then((r) => r.json() as Promise<number>),
   *   { fallback: (_context, sku) => cache.get(sku) ?? 0 },
   * )
   * const stock = await getStock('A-1')
   * ```
   */
  wrap<A extends unknown[], T>(
    fn: (context: CallContext, ...args: A) => PromiseLike<T>,
    options: { fallback: (context: FallbackContext, ...args: A) => T | PromiseLike<T> },
  ): (...args: A) => Promise<T>
  wrap<A extends unknown[], T>(
    fn: (context: CallContext, ...args: A) => PromiseLike<T>,
    options?: { fallback?: ((context: FallbackContext, ...args: A) => T | PromiseLike<T>) | undefined },
  ): (...args: A) => Promise<T | F>
  wrap<A extends unknown[], T>(
    fn: (context: CallContext, ...args: A) => PromiseLike<T>,
    options?: { fallback?: ((context: FallbackContext, ...args: A) => T | PromiseLike<T>) | undefined },
  ): (...args: A) => Promise<T | F> {
    if (typeof fn !== 'function') throw new TypeError(`${OWNER}.wrap: fn must be a function, got ${describeValue(fn)}`)
    const fallback = callFallback(WRAP, options) as ((context: FallbackContext, ...args: A) => T | PromiseLike<T>) | undefined
    return (...args: A) =>
      this.#run(
        (context) => fn(context, ...args),
        fallback === undefined ? this.#fallback : (context) => fallback(context, ...args),
      ) as Promise<T | F>
  }

  /** Every state change. */
  onStateChange(listener: Listener<StateChangeEvent>): Disposable {
    return this.#stateChange.subscribe(listener, 'Breaker.onStateChange')
  }
  /** The circuit opened. */
  onOpen(listener: Listener<void>): Disposable {
    return this.#open.subscribe(listener, 'Breaker.onOpen')
  }
  /** The circuit went half-open: the next call is the trial. */
  onHalfOpen(listener: Listener<void>): Disposable {
    return this.#halfOpen.subscribe(listener, 'Breaker.onHalfOpen')
  }
  /** The circuit closed. */
  onClose(listener: Listener<void>): Disposable {
    return this.#close.subscribe(listener, 'Breaker.onClose')
  }
  /** A call was refused without running. */
  onReject(listener: Listener<RejectEvent>): Disposable {
    return this.#reject.subscribe(listener, 'Breaker.onReject')
  }
  /** A fallback ran. */
  onFallback(listener: Listener<FallbackEvent>): Disposable {
    return this.#fallbackEvent.subscribe(listener, 'Breaker.onFallback')
  }

  /**
   * Shuts the opossum circuit down (its reset timer and window timer),
   * cancels in-flight attempts and retry pauses, removes this breaker's metric
   * series and listeners. Later calls reject with `BALLAST_BREAKER_DISPOSED`.
   */
  [Symbol.dispose](): void {
    if (this.#disposed) return
    const before = this.state
    this.#disposed = true
    this.#opened.shutdown()
    const error = this.#disposedError()
    for (const attempt of this.#live.snapshot()) attempt.cancel(error)
    this.#timeouts?.dispose()
    for (const stop of [...this.#pauses]) stop()
    this.#observer.dispose()
    if (before !== 'disabled') this.#stateChange.emit({ from: before, to: 'disabled' })
    for (const event of [this.#stateChange, this.#open, this.#halfOpen, this.#close, this.#reject, this.#fallbackEvent]) event.clear()
  }

  #disposedError(): BallastError {
    return new BallastError(`Breaker "${this.name}" is disposed`, { code: 'BALLAST_BREAKER_DISPOSED', status: 503 })
  }

  #transition(): void {
    const from = this.#state
    const to = this.state
    if (from === to) return
    this.#state = to
    this.#observer.transition(toStateLabel(to))
    this.#stateChange.emit({ from, to })
    if (to === 'open') this.#open.emit()
    else if (to === 'half-open') this.#halfOpen.emit()
    else if (to === 'closed') this.#close.emit()
  }

  #refusal(): RejectionReason | undefined {
    const circuit = this.#circuit
    if (!circuit.closed && !circuit.pendingClose) return circuit.halfOpen ? 'half-open' : 'open'
    if (this.#running >= this.#capacity) return 'capacity'
    return undefined
  }

  async #run(work: Work, fallback: AnyFallback): Promise<unknown> {
    if (this.#disposed) throw this.#disposedError()
    this.#calls++
    // Fallbacks are awaited here, not returned, so that the call counts as in flight until its
    // fallback settles (a BreakerGroup does not dispose a key whose fallback still runs).
    try {
      const deadline = Deadline.current()
      let last: Attempt | undefined
      for (let n = 0; ; n++) {
        if (last !== undefined && !this.#circuit.closed) {
          // Retries only while closed: the failure stands.
          return await this.#fallbackFor(last.outcome as 'failure' | 'timeout', last.error, fallback, deadline)
        }
        const reason = this.#refusal()
        // A retry with no room (capacity) is not a refused call: the failure in hand stands.
        if (reason !== undefined && last !== undefined) {
          return await this.#fallbackFor(last.outcome as 'failure' | 'timeout', last.error, fallback, deadline)
        }
        if (reason !== undefined) {
          const error = new BrokenCircuitError(this.name, reason, this.retryAfter())
          this.#observer.rejected(reason)
          this.#reject.emit({ reason, error })
          return await this.#fallbackFor(reason, error, fallback, deadline)
        }
        if (deadline?.expired === true) {
          // Not run: counted, but not in the duration histogram of attempts that ran.
          this.#observer.call('ignored')
          return await this.#fallbackFor('deadline', deadline.reason, fallback, deadline)
        }
        if (last !== undefined) this.#observer.retry()
        const closed = this.#circuit.closed
        const attempt = this.#attempt(work, n, deadline, closed)
        try {
          // Closed, the usual case, the attempt runs outside opossum's fire() (see #countClosed).
          await (closed ? attempt.run() : this.#circuit.fire(attempt))
        } catch {
          // The attempt holds its outcome and error.
        }
        if (closed) this.#countClosed(attempt)
        this.#live.remove(attempt)
        const outcome = attempt.outcome
        // opossum refused without running the action: only once shut down.
        if (outcome === undefined) throw this.#disposedError()
        this.#observer.call((outcome === 'filtered' ? 'ignored' : outcome) as CallOutcome, attempt.seconds)
        if (outcome === 'success') return attempt.value
        if (outcome === 'filtered') throw attempt.error
        if (outcome === 'ignored') return await this.#fallbackFor('deadline', attempt.error, fallback, deadline)
        if (n >= this.#retries || this.#disposed || !this.#circuit.closed)
          return await this.#fallbackFor(outcome, attempt.error, fallback, deadline)
        const pause = await this.#pause(deadline)
        if (pause === 'deadline')
          return await this.#fallbackFor('deadline', deadline?.reason ?? new DeadlineExceededError(), fallback, deadline)
        if (pause === 'stop') return await this.#fallbackFor(outcome, attempt.error, fallback, deadline)
        // Disposed during the pause: as for a call whose attempt was running then.
        if (pause === 'disposed') throw this.#disposedError()
        last = attempt
      }
    } finally {
      this.#calls--
    }
  }

  #attempt(work: Work, n: number, deadline: Deadline | undefined, closed: boolean): Attempt {
    // The caller's deadline caps the attempt: when it binds, its expiry is the caller's
    // problem (ignored), and comes first. The attempt timer is armed all the same: a
    // deadline disposed before the work ends (its request answered) aborts no more.
    const attempt = new Attempt(this.#host, work, n, deadline, this.#timeoutQueue(), this.#timeout === false ? 0 : this.#timeout)
    const circuit = this.#circuit
    this.#running++
    attempt.trial = circuit.halfOpen
    // Closed, the attempt is counted here (its end by #countClosed); otherwise opossum's fire() counts it.
    attempt.bucket = closed ? this.#opened.fired() : this.#opened.currentBucket()
    this.#live.add(attempt)
    return attempt
  }

  /** The attempt timeout queue on the clock in place now (a test may have installed or removed fake timers). */
  #timeoutQueue(): AttemptTimeouts<Attempt> | undefined {
    const timeouts = this.#timeouts
    if (timeouts === undefined || timeouts.current) return timeouts
    this.#timeouts = timeouts.successor()
    return this.#timeouts
  }

  /**
   * Counts the end of an attempt admitted while the circuit was closed, which ran
   * without opossum's `fire()`: its promise chain, events and clock reads cost
   * more than the rest of the call. The window is counted and the circuit trips
   * exactly as `fire()` would do it (the start was counted by #attempt); opossum
   * still owns the state machine, the window's buckets and the reset timer.
   */
  #countClosed(attempt: Attempt): void {
    const outcome = attempt.outcome
    if (outcome === 'success') this.#opened.succeeded()
    else if (outcome === 'failure' || outcome === 'timeout') this.#opened.failed(attempt.error)
  }

  /** Waits `retry.delay` if the deadline leaves budget for it and another attempt. */
  #pause(deadline: Deadline | undefined): Promise<'go' | 'stop' | 'deadline' | 'disposed'> {
    const delay = this.#retryDelay
    if (deadline !== undefined && deadline.remaining() <= delay) return Promise.resolve('stop')
    if (delay === 0) return Promise.resolve('go')
    return new Promise((resolve) => {
      const finish = (result: 'go' | 'deadline' | 'disposed') => {
        clearTimeout(timer)
        deadline?.signal.removeEventListener('abort', onAbort)
        this.#pauses.delete(stop)
        resolve(result)
      }
      const onAbort = () => finish('deadline')
      const stop = () => finish('disposed')
      const timer = setTimeout(() => finish('go'), delay)
      deadline?.signal.addEventListener('abort', onAbort)
      this.#pauses.add(stop)
    })
  }

  async #fallbackFor(reason: FallbackReason, error: unknown, fallback: AnyFallback, deadline: Deadline | undefined): Promise<unknown> {
    if (fallback === undefined) throw error
    let result: unknown
    try {
      result = await fallback({
        reason,
        error,
        // Outside a deadline, a signal of its own that never aborts: a listener the fallback
        // leaves on it goes with it, as it would on a deadline's.
        signal: deadline?.signal ?? new AbortController().signal,
        retryAfter: this.retryAfter(),
      })
    } catch (thrown) {
      this.#observer.fallback('failure')
      this.#fallbackEvent.emit({ reason, error, result: 'failure' })
      throw withCause(thrown, error, 'fallback')
    }
    this.#observer.fallback('success')
    this.#fallbackEvent.emit({ reason, error, result: 'success' })
    return result
  }
}
