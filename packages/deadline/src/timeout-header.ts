import { describeValue } from '@ballast/core'

/**
 * Default name of the header that carries the caller's remaining budget.
 *
 * @example
 * ```ts
 * const budget = parseTimeout(request.headers.get(DEFAULT_TIMEOUT_HEADER) ?? undefined) // ms, or undefined
 * ```
 */
export const DEFAULT_TIMEOUT_HEADER = 'request-timeout-ms'

/**
 * Largest value the header can carry: 10 digits.
 *
 * @example
 * ```ts
 * encodeTimeout(Number.POSITIVE_INFINITY) === String(MAX_HEADER_TIMEOUT) // '9999999999'
 * ```
 */
export const MAX_HEADER_TIMEOUT = 9_999_999_999

const DIGITS = /^[0-9]{1,10}$/

/**
 * Renders a budget for the `request-timeout-ms` header: whole milliseconds,
 * rounded down (the callee never believes it has more time than the caller),
 * at least 0, at most 10 digits.
 *
 * @example
 * ```ts
 * headers.set('request-timeout-ms', encodeTimeout(Deadline.current()?.remaining() ?? 5_000))
 * ```
 */
export function encodeTimeout(ms: number): string {
  if (typeof ms !== 'number' || Number.isNaN(ms)) {
    throw new TypeError(`encodeTimeout: "ms" must be a number of milliseconds, got ${describeValue(ms)}`)
  }
  if (ms <= 0) return '0'
  return ms >= MAX_HEADER_TIMEOUT ? String(MAX_HEADER_TIMEOUT) : String(Math.floor(ms))
}

/**
 * Reads a `request-timeout-ms` header value: relative milliseconds, 1 to 10
 * ASCII digits and nothing else (no sign, space, decimal point or exponent).
 * Anything else gives `undefined`, for the caller to ignore and count. `0` is a
 * valid, already spent budget. With `max` (a number >= 0, else a `TypeError` or
 * `RangeError`), the result is capped at it.
 *
 * @example
 * ```ts
 * parseTimeout('250') // 250
 * parseTimeout('2.5e2') // undefined
 * parseTimeout('99999', 2_000) // 2000
 * ```
 */
export function parseTimeout(value: string | undefined, max?: number): number | undefined {
  if (max !== undefined && !(typeof max === 'number' && max >= 0)) {
    const Kind = typeof max === 'number' ? RangeError : TypeError
    throw new Kind(`parseTimeout: "max" must be a number >= 0, got ${describeValue(max)}`)
  }
  if (typeof value !== 'string' || !DIGITS.test(value)) return undefined
  const ms = Number(value)
  return max !== undefined && ms > max ? max : ms
}
