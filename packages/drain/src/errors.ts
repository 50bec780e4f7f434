import { BallastError } from '@ballast/core'

/**
 * Reason of `drain.signal` once draining starts, and the error behind a 503 for
 * a request that arrives after the service stopped serving.
 *
 * @example
 * ```ts
 * drain.signal.addEventListener('abort', () => {
 *   if (drain.signal.reason instanceof DrainingError) stopPolling()
 * })
 * ```
 */
export class DrainingError extends BallastError {
  static override readonly name: string = 'DrainingError'

  constructor(reason: string) {
    super(`Service is shutting down (${reason})`, { code: 'BALLAST_DRAINING', status: 503, headers: { connection: 'close' } })
  }
}

/**
 * Reason of a hook's AbortSignal when its own timeout elapsed, or when the whole
 * `gracePeriod` ran out while it was running.
 *
 * @example
 * ```ts
 * drain.onShutdown('queue', async (signal) => {
 *   await consumer.close({ signal })  // aborted with DrainHookTimeoutError after 5 s
 * }, { timeout: 5_000 })
 * ```
 */
export class DrainHookTimeoutError extends BallastError {
  static override readonly name: string = 'DrainHookTimeoutError'

  /** The hook's name. */
  readonly hook: string
  /** The hook's budget in milliseconds. */
  readonly timeout: number

  constructor(hook: string, timeout: number, cause?: unknown) {
    super(`Shutdown hook "${hook}" did not finish within ${timeout} ms`, {
      code: 'BALLAST_DRAIN_HOOK_TIMEOUT',
      status: 500,
      ...(cause === undefined ? {} : { cause }),
    })
    this.hook = hook
    this.timeout = timeout
  }
}

/**
 * Reason of pending hooks' signals when `gracePeriod` elapsed.
 *
 * @example
 * ```ts
 * if (signal.reason instanceof GracePeriodExceededError) skipFlush()
 * ```
 */
export class GracePeriodExceededError extends BallastError {
  static override readonly name: string = 'GracePeriodExceededError'

  /** The drain's `gracePeriod` in milliseconds. */
  readonly gracePeriod: number

  constructor(gracePeriod: number) {
    super(`Shutdown did not finish within gracePeriod (${gracePeriod} ms)`, { code: 'BALLAST_DRAIN_GRACE_PERIOD_EXCEEDED', status: 500 })
    this.gracePeriod = gracePeriod
  }
}
