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
  constructor(reason: string) {
    super(`Service is shutting down (${reason})`, { code: 'BALLAST_DRAINING', status: 503, headers: { connection: 'close' } })
    this.name = 'DrainingError'
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
  readonly hook: string
  constructor(hook: string, timeout: number, cause?: unknown) {
    super(`Shutdown hook "${hook}" did not finish within ${timeout} ms`, {
      code: 'BALLAST_DRAIN_HOOK_TIMEOUT',
      status: 500,
      ...(cause === undefined ? {} : { cause }),
    })
    this.name = 'DrainHookTimeoutError'
    this.hook = hook
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
  constructor(gracePeriod: number) {
    super(`Shutdown did not finish within gracePeriod (${gracePeriod} ms)`, { code: 'BALLAST_DRAIN_GRACE_PERIOD_EXCEEDED', status: 500 })
    this.name = 'GracePeriodExceededError'
  }
}
