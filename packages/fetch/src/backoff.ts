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
const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)'
const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)'
const TIME = '\\d{2}:\\d{2}:\\d{2}'
// The three forms of an HTTP-date (RFC 9110, 5.6.7), all in GMT: IMF-fixdate, then
// the obsolete RFC 850 and asctime forms, which recipients must still accept.
const IMF_FIXDATE = new RegExp(`^${DAY}, \\d{2} ${MONTH} \\d{4} ${TIME} GMT$`)
const RFC_850 = new RegExp(`^(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, \\d{2}-${MONTH}-\\d{2} ${TIME} GMT$`)
const ASCTIME = new RegExp(`^${DAY} ${MONTH} [ \\d]\\d ${TIME} \\d{4}$`)

/** An HTTP-date in epoch ms, or `NaN`: only the forms HTTP allows, not whatever `Date.parse` guesses at. */
function httpDate(text: string): number {
  if (IMF_FIXDATE.test(text) || RFC_850.test(text)) return Date.parse(text)
  // asctime carries no zone; Date.parse would read it as local time.
  if (ASCTIME.test(text)) return Date.parse(`${text} GMT`)
  return Number.NaN
}

/**
 * A `Retry-After` header in milliseconds: delay-seconds or an HTTP-date
 * (relative to `now`). `undefined` when absent or malformed; 0 for a date in the
 * past.
 *
 * @example
 * ```ts
 * retryAfterMs('2') // 2000
 * retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT') // 0 (in the past)
 * retryAfterMs('in a minute') // undefined
 * ```
 */
export function retryAfterMs(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined
  const text = value.trim()
  if (DIGITS.test(text)) return Number(text) * 1000
  const at = httpDate(text)
  if (Number.isNaN(at)) return undefined
  return Math.max(0, at - now)
}
