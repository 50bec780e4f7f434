const brand = Symbol.for('ballast.error')

/**
 * Options shared by every {@link BallastError}.
 *
 * @example
 * ```ts
 * const options: BallastErrorOptions = { code: 'BALLAST_QUOTA', status: 429, headers: { 'retry-after': '5' } }
 * const error = new BallastError('quota exceeded', options) // next(error): a 429 with retry-after: 5
 * ```
 */
export interface BallastErrorOptions {
  /** Stable machine-readable code, `BALLAST_*`. */
  code: string
  /** HTTP status Express's default error handler answers with. */
  status: number
  /** Response headers finalhandler sets for this error (e.g. `retry-after`). */
  headers?: Record<string, string> | undefined
  /** The error that led to this one. */
  cause?: unknown
}

/**
 * Base class of every error ballast throws.
 *
 * Each error carries a stable `code` to branch on, and the `status` (plus optional
 * `headers`) that Express's default error handler uses, so `next(error)` answers
 * the client correctly without any custom handler. `instanceof` works even when an
 * application ends up with two copies of this package: identity is a `Symbol.for`
 * brand, not the class object.
 *
 * @example
 * ```ts
 * class QuotaExceededError extends BallastError {
 *   static override readonly name = 'QuotaExceededError' // survives a minifier
 *   constructor() {
 *     super('quota exceeded', { code: 'BALLAST_QUOTA', status: 429, headers: { 'retry-after': '5' } })
 *   }
 * }
 * ```
 */
export class BallastError extends Error {
  // A string, not the class's own name: a minifier renames classes, and `name` is
  // what logs show and what cross-copy `instanceof` compares.
  static override readonly name: string = 'BallastError'

  readonly code: string
  readonly status: number
  /** Express's finalhandler reads `statusCode` as well as `status`. */
  readonly statusCode: number
  // Declared, not a field: an error without headers has no `headers` key at all.
  declare readonly headers?: Readonly<Record<string, string>>

  constructor(message: string, options: BallastErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = options.code
    this.status = options.status
    this.statusCode = options.status
    if (options.headers !== undefined) (this as { headers?: Readonly<Record<string, string>> }).headers = options.headers
  }

  /**
   * Branded identity: survives duplicate installs of `@ballast/core`. Subclasses
   * match by class name among branded errors, which is what undici does with its
   * per-class `Symbol.for` keys.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return matchesBallastClass(this, value)
  }
}
// On the prototype, not a member: a symbol member in the declared type would make two
// copies' BallastError types unrelated (each has its own `unique symbol`), while the
// brand is what makes them one at run time.
brandAsBallastError(BallastError.prototype)

/**
 * True for any error created by any copy of `@ballast/core`, including errors
 * that subclass another library's base (such as p-timeout's `TimeoutError`) and
 * carry the brand with {@link brandAsBallastError}.
 *
 * @example
 * ```ts
 * const status = isBallastError(error) ? error.status : 500 // in an error handler
 * ```
 */
export function isBallastError(value: unknown): value is BallastError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true
}

/**
 * Marks a class whose base is not {@link BallastError} as one, for errors that must
 * extend a third-party class (p-timeout's `TimeoutError`) yet answer to
 * `isBallastError`. Call once on the prototype.
 *
 * @example
 * ```ts
 * class UpstreamTimeoutError extends TimeoutError { readonly code = 'BALLAST_UPSTREAM_TIMEOUT'; readonly status = 504 }
 * brandAsBallastError(UpstreamTimeoutError.prototype)
 * isBallastError(new UpstreamTimeoutError()) // true
 * ```
 */
export function brandAsBallastError(prototype: object): void {
  Object.defineProperty(prototype, brand, { value: true, enumerable: false })
}

/**
 * `instanceof` for a ballast error class that may exist twice in one process:
 * the prototype chain first, then the brand plus the class names along the
 * value's prototype chain (a subclass of the other copy's class). Use it as the
 * static `[Symbol.hasInstance]` of error classes that cannot extend
 * {@link BallastError}.
 *
 * @example
 * ```ts
 * class UpstreamTimeoutError extends TimeoutError {
 *   static override [Symbol.hasInstance](value: unknown): boolean { return matchesBallastClass(this, value) }
 * }
 * ```
 */
export function matchesBallastClass(cls: abstract new (...args: never[]) => unknown, value: unknown): boolean {
  if (Function.prototype[Symbol.hasInstance].call(cls, value)) return true
  if (!isBallastError(value)) return false
  if (cls.name === 'BallastError' || (value as Error).name === cls.name) return true
  // A subclass of the class (a user's, maybe minified): its prototype chain names the class.
  for (let proto = Object.getPrototypeOf(value) as object | null; proto !== null; proto = Object.getPrototypeOf(proto)) {
    if (Object.hasOwn(proto, 'constructor') && (proto as { constructor: { name?: unknown } }).constructor.name === cls.name) return true
  }
  return false
}
