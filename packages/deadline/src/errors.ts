import { BallastError, brandAsBallastError, matchesBallastClass } from '@ballast/core'
import { TimeoutError } from 'p-timeout'

/**
 * Why a deadline ran out.
 *
 * - `local`: this deadline's own time limit fired.
 * - `inherited`: the limit that fired was the caller's budget (an inbound
 *   `request-timeout-ms` header), not one this service chose.
 * - `parent`: an enclosing deadline ran out first; `cause` is the parent's error.
 *
 * @example
 * ```ts
 * const source: DeadlineSource = error.source
 * if (source === 'inherited') log.info('the caller ran out of budget, not this service')
 * ```
 */
export type DeadlineSource = 'local' | 'inherited' | 'parent'

/**
 * Options of {@link DeadlineExceededError}.
 *
 * @example
 * ```ts
 * const options: DeadlineExceededErrorOptions = { source: 'inherited', timeout: 250 }
 * const error = new DeadlineExceededError(undefined, options) // "deadline exceeded: the caller's budget ran out"
 * ```
 */
export interface DeadlineExceededErrorOptions {
  /** Which limit fired, default `local`. */
  source?: DeadlineSource | undefined
  /** The budget the deadline was given, in ms, when known. */
  timeout?: number | undefined
  /** The parent's error when `source` is `parent`. */
  cause?: unknown
}

const sourceText: Record<DeadlineSource, string> = {
  local: 'deadline exceeded',
  inherited: "deadline exceeded: the caller's budget ran out",
  parent: 'deadline exceeded: an enclosing deadline ran out',
}

/**
 * The abort reason of a deadline that ran out, and the rejection of
 * `withDeadline` / `Deadline.race` in that case.
 *
 * It extends p-timeout's `TimeoutError`, so code that already catches that keeps
 * working, and is a ballast error (`code` `BALLAST_DEADLINE_EXCEEDED`, `status`
 * 504) whose `instanceof` holds across duplicate installs. `source` tells the
 * three kinds of expiry apart; {@link rootDeadlineSource} follows `cause` to the
 * limit that fired first. It is built only when a deadline actually expires.
 *
 * @example
 * ```ts
 * try {
 *   await withDeadline(200, (signal) => fetch(url, { signal }))
 * } catch (error) {
 *   if (error instanceof DeadlineExceededError && error.source === 'inherited') log.info('caller gave up')
 * }
 * ```
 */
export class DeadlineExceededError extends TimeoutError {
  static override readonly name: string = 'DeadlineExceededError'

  readonly code = 'BALLAST_DEADLINE_EXCEEDED'
  readonly status = 504
  readonly statusCode = 504
  readonly source: DeadlineSource
  readonly timeout: number | undefined

  constructor(message?: string, options: DeadlineExceededErrorOptions = {}) {
    const source = options.source ?? 'local'
    super(message ?? sourceText[source], options.cause === undefined ? undefined : { cause: options.cause })
    // p-timeout sets 'TimeoutError' (and types `name` as that literal).
    ;(this as { name: string }).name = new.target.name
    this.source = source
    this.timeout = options.timeout
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return matchesBallastClass(this, value)
  }
}
brandAsBallastError(DeadlineExceededError.prototype)

/**
 * The source of the limit that fired first: follows `cause` through `parent`
 * errors to the deadline whose own limit ran out.
 *
 * @example
 * ```ts
 * rootDeadlineSource(signal.reason) // 'inherited' when the caller's header budget fired
 * ```
 */
export function rootDeadlineSource(error: DeadlineExceededError): 'local' | 'inherited' {
  let current: unknown = error
  for (let depth = 0; depth < 64 && current instanceof DeadlineExceededError; depth++) {
    if (current.source !== 'parent') return current.source
    current = current.cause
  }
  return 'local'
}

/**
 * The abort reason of a request deadline whose client went away (the response
 * closed before it was finished). Status 499 (client closed request): it is not a
 * server failure and a circuit breaker must not count it. When it reaches a child
 * deadline through its parent, `cause` is the parent's `ClientClosedError`.
 *
 * @example
 * ```ts
 * if (req.deadline?.signal.reason instanceof ClientClosedError) return // nobody is listening
 * ```
 */
export class ClientClosedError extends BallastError {
  static override readonly name: string = 'ClientClosedError'

  constructor(message = 'the client closed the connection', options: { cause?: unknown } = {}) {
    super(message, { code: 'BALLAST_CLIENT_CLOSED', status: 499, cause: options.cause })
  }
}

/**
 * The abort reason of a deadline cancelled without a reason, of a child whose
 * parent was cancelled with a reason that is neither a deadline nor a client
 * close (`cause` holds that reason), or of a child whose parent was disposed
 * (`disposed`: the work outlived the request or call that started it). Status
 * 499: the work was called off, it did not fail.
 *
 * @example
 * ```ts
 * const d = Deadline.after(1_000)
 * d.cancel()
 * d.signal.reason instanceof DeadlineCancelledError // true
 * ```
 */
export class DeadlineCancelledError extends BallastError {
  static override readonly name: string = 'DeadlineCancelledError'

  /**
   * True when an enclosing deadline was disposed (its request answered, its
   * `withDeadline` settled) while this one was still running: the caller is gone,
   * which `isDependencyFailure` of @ballast/breaker does not count against a
   * dependency. False for `cancel()`, which may be the work's own reaction to a
   * failure.
   */
  readonly disposed: boolean

  constructor(message = 'the deadline was cancelled', options: { cause?: unknown; disposed?: boolean | undefined } = {}) {
    super(message, { code: 'BALLAST_DEADLINE_CANCELLED', status: 499, cause: options.cause })
    this.disposed = options.disposed === true
  }
}
