import { BallastError, brandAsBallastError, describeValue, matchesBallastClass } from '@ballast/core'
import { TimeoutError } from 'p-timeout'

/**
 * Why a call was refused without running: the circuit is open, its one half-open trial is taken, or it is full.
 *
 * @example
 * ```ts
 * const refused: Record<RejectionReason, number> = { open: 0, 'half-open': 0, capacity: 0 }
 * breaker.onReject(({ reason }) => refused[reason]++)
 * ```
 */
export type RejectionReason = 'open' | 'half-open' | 'capacity'

/**
 * Thrown (or handed to the fallback) when a {@link Breaker} refuses a call without
 * running it. `status` is 503 and `headers['retry-after']` says, in whole seconds, when
 * a trial call will be let through, so `next(error)` in Express answers correctly with
 * no custom error handler.
 *
 * | reason      | code                       |
 * |-------------|----------------------------|
 * | `open`      | `BALLAST_BREAKER_OPEN`     |
 * | `half-open` | `BALLAST_BREAKER_OPEN`     |
 * | `capacity`  | `BALLAST_BREAKER_CAPACITY` |
 *
 * @example
 * ```ts
 * try {
 *   await breaker.execute(async ({ signal }) => (await fetch(url, { signal })).json())
 * } catch (error) {
 *   if (error instanceof BrokenCircuitError) console.log(`retry in ${error.retryAfter} s`)
 *   throw error
 * }
 * ```
 */
export class BrokenCircuitError extends BallastError {
  static override readonly name: string = 'BrokenCircuitError'

  /** The breaker's name. */
  readonly breaker: string
  readonly reason: RejectionReason
  /** Seconds until a trial call is allowed (the `retry-after` header). */
  readonly retryAfter: number

  constructor(breaker: string, reason: RejectionReason, retryAfter: number) {
    const seconds = Math.max(1, Math.ceil(retryAfter))
    super(
      reason === 'capacity'
        ? `Breaker "${breaker}" is at capacity`
        : `Breaker "${breaker}" is ${reason === 'open' ? 'open' : 'half-open and its trial call is in flight'}`,
      {
        code: reason === 'capacity' ? 'BALLAST_BREAKER_CAPACITY' : 'BALLAST_BREAKER_OPEN',
        status: 503,
        headers: { 'retry-after': String(seconds) },
      },
    )
    this.breaker = breaker
    this.reason = reason
    this.retryAfter = seconds
  }
}

/**
 * One attempt ran longer than the breaker's `timeout`. It counts as a dependency
 * failure. It extends p-timeout's `TimeoutError` (so generic timeout handling
 * catches it) and is still a ballast error: `code` `BALLAST_BREAKER_TIMEOUT`,
 * `status` 504, `instanceof` across duplicate package copies.
 *
 * @example
 * ```ts
 * const breaker = new Breaker({ name: 'inventory', timeout: 800 })
 * await breaker.execute(({ signal }) => slowCall(signal)).catch((error) => {
 *   if (error instanceof BreakerTimeoutError) console.log(error.timeout) // 800
 * })
 * ```
 */
export class BreakerTimeoutError extends TimeoutError {
  static override readonly name: string = 'BreakerTimeoutError'

  readonly code = 'BALLAST_BREAKER_TIMEOUT'
  readonly status = 504
  readonly statusCode = 504
  readonly breaker: string
  /** The attempt budget in milliseconds. */
  readonly timeout: number

  constructor(breaker: string, timeout: number) {
    super(`Breaker "${breaker}": attempt timed out after ${timeout} ms`)
    // p-timeout sets 'TimeoutError' (and types `name` as that literal).
    ;(this as { name: string }).name = new.target.name
    this.breaker = breaker
    this.timeout = timeout
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return matchesBallastClass(this, value)
  }
}

brandAsBallastError(BreakerTimeoutError.prototype)

/**
 * `error` (what a fallback or an `isFailure` threw) with `cause` as its cause, unless
 * it already has one or is `cause` itself; a thrown non-object becomes an Error
 * saying what `source` threw. Internal: not exported from the package.
 */
export function withCause(error: unknown, cause: unknown, source: 'fallback' | 'isFailure'): unknown {
  if (error === cause) return error
  if (typeof error === 'object' && error !== null) {
    if ((error as { cause?: unknown }).cause === undefined && Object.isExtensible(error)) {
      Object.defineProperty(error, 'cause', { value: cause, writable: true, configurable: true, enumerable: false })
    }
    return error
  }
  return new Error(`${source} threw ${describeValue(error)}`, { cause })
}
