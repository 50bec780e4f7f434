/**
 * Backoff before retry `retry` (1 for the first retry): exponential from `delay`,
 * capped at `maxDelay`, with "equal jitter" (half fixed, half random) so that
 * callers that failed together do not retry together, yet never retry at once.
 *
 * @example
 * ```ts
 * backoff(1, 50, 1_000) // 25..50 ms
 * backoff(3, 50, 1_000) // 100..200 ms
 * ```
 */
export function backoff(retry: number, delay: number, maxDelay: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxDelay, delay * 2 ** Math.max(0, retry - 1))
  return ceiling / 2 + (random() * ceiling) / 2
}

const DIGITS = /^\d{1,10}$/

/**
 * A `Retry-After` header in milliseconds: delay-seconds or an HTTP date
 * (relative to `now`). `undefined` when absent or malformed; 0 for a date in the
 * past.
 *
 * @example
 * ```ts
 * retryAfterMs('2') // 2000
 * retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT') // 0 (in the past)
 * ```
 */
export function retryAfterMs(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined
  const text = value.trim()
  if (DIGITS.test(text)) return Number(text) * 1000
  if (!/[a-z]/i.test(text)) return undefined
  const at = Date.parse(text)
  if (Number.isNaN(at)) return undefined
  return Math.max(0, at - now)
}
