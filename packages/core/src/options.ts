import { inspect } from 'node:util'

/**
 * Largest delay `setTimeout` honours; anything above fires at once in Node.
 *
 * @example
 * ```ts
 * const timer = ms <= MAX_TIMER_DELAY ? setTimeout(expire, ms) : undefined // above it: no timer at all
 * ```
 */
export const MAX_TIMER_DELAY = 2 ** 31 - 1

/**
 * Renders a bad option value for an error message: short, quoted, never throws.
 *
 * @example
 * ```ts
 * describeValue('yes') // "'yes'"
 * throw new TypeError(`JobQueue: option "name" must be a string, got ${describeValue(options.name)}`)
 * ```
 */
export function describeValue(value: unknown): string {
  // Its state lives in internal symbols, which inspect() without custom hooks would list.
  if (value instanceof AbortSignal) return `AbortSignal { aborted: ${value.aborted} }`
  let text: string
  try {
    // No custom inspect hooks: a value's own code must not run (or throw) while an error about it is built.
    text = inspect(value, { depth: 1, breakLength: Number.POSITIVE_INFINITY, maxStringLength: 64, maxArrayLength: 8, customInspect: false })
  } catch {
    text = Object.prototype.toString.call(value)
  }
  return text.length > MAX_DESCRIPTION ? `${text.slice(0, MAX_DESCRIPTION)}…` : text
}

// Long enough for any option value worth quoting, short enough for a log line.
const MAX_DESCRIPTION = 200

function fail(owner: string, option: string, expected: string, value: unknown, Kind: typeof TypeError): never {
  throw new Kind(`${owner}: option "${option}" must be ${expected}, got ${describeValue(value)}`)
}

/**
 * Bounds for {@link numberOption}.
 *
 * @example
 * ```ts
 * const bounds: NumberBounds = { min: 0, max: 10, integer: true }
 * const attempts = numberOption('JobQueue', 'retry.attempts', options.attempts, 0, bounds)
 * ```
 */
export interface NumberBounds {
  min?: number
  max?: number
  integer?: boolean
}

/**
 * Validates a numeric option: a `TypeError` for a non-number (or NaN), a
 * `RangeError` outside the bounds. Both name the owner, the option and the value.
 *
 * @example
 * ```ts
 * const timeout = numberOption('Breaker', 'timeout', options.timeout, 10_000, { min: 1 })
 * // RangeError: Breaker: option "timeout" must be a number >= 1, got -5
 * ```
 */
export function numberOption(owner: string, option: string, value: unknown, fallback: number, bounds?: NumberBounds): number
export function numberOption(owner: string, option: string, value: unknown, fallback: undefined, bounds?: NumberBounds): number | undefined
export function numberOption(
  owner: string,
  option: string,
  value: unknown,
  fallback: number | undefined,
  bounds: NumberBounds = {},
): number | undefined {
  if (value === undefined) return fallback
  const { min = Number.NEGATIVE_INFINITY, max = Number.POSITIVE_INFINITY, integer = false } = bounds
  const expected = [integer ? 'an integer' : 'a number', Number.isFinite(min) ? `>= ${min}` : '', Number.isFinite(max) ? `<= ${max}` : '']
    .filter(Boolean)
    .join(' ')
  if (typeof value !== 'number' || Number.isNaN(value)) fail(owner, option, expected, value, TypeError)
  if (value < min || value > max || (integer && !Number.isInteger(value))) fail(owner, option, expected, value, RangeError)
  return value
}

/**
 * Validates an optional boolean option.
 *
 * @example
 * ```ts
 * const inherited = booleanOption('JobQueue', 'inherited', options.inherited, false) // TypeError for 'yes'
 * ```
 */
export function booleanOption(owner: string, option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') fail(owner, option, 'a boolean', value, TypeError)
  return value
}

/**
 * Validates an optional function option.
 *
 * @example
 * ```ts
 * const onFull = functionOption<(queue: string) => void>('JobQueue', 'onFull', options.onFull) // undefined when not given
 * ```
 */
export function functionOption<F extends (...args: never[]) => unknown>(owner: string, option: string, value: unknown): F | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') fail(owner, option, 'a function', value, TypeError)
  return value as F
}

/**
 * Validates the listener given to an `onX(listener)` method, at subscription:
 * a non-function would otherwise fail only when the event fires.
 *
 * @example
 * ```ts
 * function onDrained(listener: () => void): void {
 *   listeners.push(listenerArgument<() => void>('JobQueue.onDrained', listener)) // TypeError now, not at the event
 * }
 * ```
 */
export function listenerArgument<F extends (...args: never[]) => unknown>(owner: string, value: unknown): F {
  if (typeof value !== 'function') throw new TypeError(`${owner}: "listener" must be a function, got ${describeValue(value)}`)
  return value as F
}

/**
 * Validates a string option, optionally against a pattern (a `RangeError` when it
 * does not match, naming the pattern).
 *
 * @example
 * ```ts
 * const header = stringOption('JobQueue', 'header', options.header, 'x-job-id', /^[a-z0-9-]+$/)
 * ```
 */
export function stringOption(owner: string, option: string, value: unknown, fallback: string, pattern?: RegExp): string
export function stringOption(owner: string, option: string, value: unknown, fallback: undefined, pattern?: RegExp): string | undefined
export function stringOption(
  owner: string,
  option: string,
  value: unknown,
  fallback: string | undefined,
  pattern?: RegExp,
): string | undefined {
  if (value === undefined) return fallback
  if (typeof value !== 'string') fail(owner, option, 'a string', value, TypeError)
  if (pattern !== undefined && !pattern.test(value)) fail(owner, option, `a string matching ${pattern}`, value, RangeError)
  return value
}

/**
 * Validates a value that must be one of a fixed set.
 *
 * @example
 * ```ts
 * const status = oneOfOption('JobQueue', 'status', options.status, [503, 504], 504) // '504' is a TypeError, 500 a RangeError
 * ```
 */
export function oneOfOption<T extends string | number | boolean>(
  owner: string,
  option: string,
  value: unknown,
  allowed: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback
  if (!allowed.includes(value as T)) {
    // A value of another type than the allowed ones is a TypeError ('504' for 504), a wrong one of the type a RangeError.
    const Kind = allowed.some((known) => typeof known === typeof value) ? RangeError : TypeError
    fail(owner, option, `one of ${allowed.map((v) => describeValue(v)).join(', ')}`, value, Kind)
  }
  return value as T
}

/**
 * Validates that the options argument itself is a plain object (or absent).
 *
 * @example
 * ```ts
 * const opts = objectOption<JobQueueOptions>('JobQueue', 'options', options, ['name', 'concurrency'])
 * // { concurency: 2 }: TypeError: JobQueue: unknown option "concurency" (did you mean "concurrency"?), got 2
 * ```
 */
export function objectOption<T extends object>(owner: string, option: string, value: unknown, known?: readonly string[]): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || !isOptionsBag(value)) fail(owner, option, 'an object', value, TypeError)
  if (known !== undefined) refuseUnknown(owner, option === 'options' ? '' : `${option}.`, value as Record<string, unknown>, known)
  return value as T
}

/**
 * A misspelt option name would leave its default silently in force: every name
 * an options object carries must be one of `known` (an `undefined` value too,
 * for the same reason), and the error suggests the closest known one.
 */
function refuseUnknown(owner: string, path: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue
    const near = closest(key, known)
    const hint = near === undefined ? '' : ` (did you mean "${path}${near}"?)`
    throw new TypeError(`${owner}: unknown option "${path}${key}"${hint}, got ${describeValue(ownValue(value, key))}`)
  }
}

/** An object whose options are its own properties: not an array, nor a collection or value whose content they are not. */
function isOptionsBag(value: object): boolean {
  return !(
    Array.isArray(value) ||
    value instanceof Map ||
    value instanceof Set ||
    value instanceof WeakMap ||
    value instanceof WeakSet ||
    value instanceof Date ||
    value instanceof RegExp ||
    value instanceof Promise
  )
}

/** `value[key]` for an error message, without running a getter that may throw. */
function ownValue(value: object, key: string): unknown {
  const descriptor = Object.getOwnPropertyDescriptor(value, key)
  return descriptor === undefined || 'value' in descriptor ? descriptor?.value : '<getter>'
}

/** The known name at most two edits away from `name` (case aside), if one is. */
function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = 3
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

// Levenshtein distance, one row at a time.
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        (previous[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      )
    }
    previous = row
  }
  return previous[b.length] as number
}

/**
 * Converts a delay in milliseconds to what `setTimeout` can honour: `undefined`
 * ("no timer") above {@link MAX_TIMER_DELAY}, since Node would fire such a timer
 * after 1 ms instead.
 *
 * @example
 * ```ts
 * const delay = timerDelay(ms)
 * if (delay !== undefined) setTimeout(expire, delay).unref()
 * ```
 */
export function timerDelay(ms: number): number | undefined {
  return ms > MAX_TIMER_DELAY || !Number.isFinite(ms) ? undefined : Math.max(0, ms)
}
