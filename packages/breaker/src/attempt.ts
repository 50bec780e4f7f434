import type { Deadline } from '@ballast/deadline'
import type { AttemptTimeouts } from './attempt-timeouts.js'
import { BreakerTimeoutError, withCause } from './errors.js'
import { IGNORED } from './opossum.js'

/**
 * What a call's work receives.
 *
 * @example
 * ```ts
 * // The body is read inside the work: the attempt's timeout and the caller's deadline cover it too.
 * const load = async ({ signal, attempt }: CallContext) =>
 *   (await fetch(url, { signal, headers: { 'x-attempt': String(attempt) } })).json()
 * const stock = await breaker.execute(load)
 * ```
 */
export interface CallContext {
  /**
   * Aborted when this attempt times out (reason {@link BreakerTimeoutError}), when
   * the caller's deadline expires or the client goes away (the deadline's reason),
   * or when the breaker is disposed. Every attempt has its own: one call's timeout
   * never aborts another call.
   */
  readonly signal: AbortSignal
  /** 0 for the first try, 1 for the first retry, … */
  readonly attempt: number
}

/** How an attempt ended. `filtered` is an error `isFailure` rejected: rethrown, not counted. */
export type AttemptOutcome = 'success' | 'failure' | 'timeout' | 'ignored' | 'filtered'

/** What an attempt needs from its breaker. */
export interface AttemptHost {
  readonly name: string
  readonly isFailure: (error: unknown) => boolean
  /** The work settled (for real, not at its timeout): frees its capacity slot. */
  workSettled(attempt: Attempt): void
  /** The attempt ended without a verdict on the dependency (called before opossum sees it). */
  ignored(attempt: Attempt): void
}

/**
 * What `work` gets: a plain object of its own, not the attempt, that can be spread
 * and passed on. Its signal is made here: a getter on an object literal made every
 * call ~1 µs slower (V8 builds such a literal on a slow path), and one on a
 * prototype is lost by a spread.
 */
function callContext(attempt: Attempt): CallContext {
  return { signal: attempt.signal, attempt: attempt.attempt }
}

/**
 * One execution of the work: its own AbortController, its own expiry (on the
 * breaker's shared timeout queue), a link to the caller's deadline removed as
 * soon as the attempt ends.
 * The promise from {@link run} is what opossum sees: it resolves on success,
 * rejects on failure or timeout, and resolves with {@link IGNORED} (which opossum
 * is made to drop) when the attempt has no verdict on the dependency.
 */
export class Attempt implements CallContext {
  readonly attempt: number
  outcome: AttemptOutcome | undefined = undefined
  value: unknown = undefined
  error: unknown = undefined
  /** Seconds from start to outcome. */
  seconds = 0
  /** Set by the host's list of live attempts. */
  prev: Attempt | undefined = undefined
  next: Attempt | undefined = undefined
  /** Set by the host: opossum's window bucket this attempt was counted in. */
  bucket: { fires: number } | undefined = undefined
  /** Set by the host: whether this attempt took the half-open trial. */
  trial = false

  readonly #host: AttemptHost
  readonly #work: (context: CallContext) => PromiseLike<unknown>
  readonly #deadline: Deadline | undefined
  readonly #timeouts: AttemptTimeouts<Attempt> | undefined
  readonly #budget: number
  /** `performance.now()` at which this attempt times out (when it has a budget). */
  expiresAt = Number.POSITIVE_INFINITY
  #controller: AbortController | undefined = undefined
  #aborted = false
  #reason: unknown = undefined
  #queued = false
  #resolve: ((value: unknown) => void) | undefined = undefined
  #reject: ((error: unknown) => void) | undefined = undefined
  #started = 0
  // The link to the caller's deadline, through its cheap onAbort hook rather than an
  // abort listener on its signal (which would also create the deadline's AbortController).
  #link: Disposable | undefined = undefined

  constructor(
    host: AttemptHost,
    work: (context: CallContext) => PromiseLike<unknown>,
    attempt: number,
    deadline: Deadline | undefined,
    timeouts: AttemptTimeouts<Attempt> | undefined,
    budget: number,
  ) {
    this.#host = host
    this.#work = work
    this.attempt = attempt
    this.#deadline = deadline
    this.#timeouts = timeouts
    this.#budget = budget
  }

  get ended(): boolean {
    return this.outcome !== undefined
  }

  get signal(): AbortSignal {
    // Made when the work gets its context (not for an attempt ended before it ran);
    // one made after the abort still reads aborted.
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#aborted) this.#controller.abort(this.#reason)
    }
    return this.#controller.signal
  }

  /** The opossum action. */
  run(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
      this.#started = performance.now()
      const deadline = this.#deadline
      if (deadline !== undefined) {
        if (deadline.expired) {
          this.#host.workSettled(this)
          this.handleEvent()
          return
        }
        this.#link = deadline.onAbort(() => this.handleEvent())
      }
      if (this.#timeouts !== undefined) {
        this.expiresAt = this.#started + this.#budget
        this.#queued = true
        this.#timeouts.add(this)
      }
      let promise: PromiseLike<unknown>
      const work = this.#work
      try {
        promise = work(callContext(this))
      } catch (error) {
        promise = Promise.reject(error)
      }
      Promise.resolve(promise).then(
        (value) => this.#settled(true, value),
        (error: unknown) => this.#settled(false, error),
      )
    })
  }

  /** The caller's deadline aborted (expiry or client gone): not the dependency's fault. */
  handleEvent(): void {
    if (this.outcome !== undefined) return
    const deadline = this.#deadline as Deadline
    const reason = deadline.reason
    this.#abort(reason)
    this.error = reason
    this.#finish('ignored')
  }

  timedOut(): void {
    if (this.outcome !== undefined) return
    // Reading `expired` aborts a caller deadline that ran out first (its own timer not fired
    // yet), which ends the attempt as the caller's through handleEvent. One disposed (its
    // request answered) aborts no more: this timer is what bounds the work then, a timeout.
    void this.#deadline?.expired
    if (this.outcome !== undefined) return
    const error = new BreakerTimeoutError(this.#host.name, this.#budget)
    this.#abort(error)
    this.error = error
    this.#finish('timeout')
  }

  /** Ends the attempt from outside (the breaker is being disposed). */
  cancel(error: unknown): void {
    if (this.outcome !== undefined) return
    this.#abort(error)
    this.error = error
    this.#finish('filtered')
  }

  #abort(reason: unknown): void {
    this.#aborted = true
    this.#reason = reason
    this.#controller?.abort(reason)
  }

  #settled(ok: boolean, result: unknown): void {
    this.#host.workSettled(this)
    if (this.outcome !== undefined) return
    if (ok) {
      this.value = result
      this.#finish('success')
      return
    }
    this.error = result
    // Reading `expired` aborts a caller deadline that ran out, which ends this attempt as the
    // caller's through handleEvent. One disposed aborts no more: the error is the work's.
    void this.#deadline?.expired
    if (this.outcome !== undefined) return
    this.#finish(this.#verdict(result))
  }

  /**
   * `isFailure`'s verdict on the work's error. A predicate that throws is a bug in
   * it, but the call must still settle (and its rejection must not go unhandled in
   * this `.then`): the call fails with the predicate's error, the work's error as
   * its `cause`, and is counted and handed to the fallback like any failure.
   */
  #verdict(error: unknown): AttemptOutcome {
    try {
      return this.#host.isFailure(error) ? 'failure' : 'filtered'
    } catch (thrown) {
      this.error = withCause(thrown, error, 'isFailure')
      return 'failure'
    }
  }

  #finish(outcome: AttemptOutcome): void {
    this.outcome = outcome
    this.seconds = (performance.now() - this.#started) / 1000
    if (this.#queued) {
      this.#queued = false
      ;(this.#timeouts as AttemptTimeouts<Attempt>).ended()
    }
    const link = this.#link
    if (link !== undefined) {
      this.#link = undefined
      link[Symbol.dispose]()
    }
    const resolve = this.#resolve
    const reject = this.#reject
    this.#resolve = undefined
    this.#reject = undefined
    if (outcome === 'success') resolve?.(this.value)
    else if (outcome === 'failure' || outcome === 'timeout') reject?.(this.error)
    else {
      this.#host.ignored(this)
      resolve?.(IGNORED)
    }
  }
}
