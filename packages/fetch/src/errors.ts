import { BallastError } from '@ballast/core'

/**
 * One attempt used up its budget (the client's `timeout`, or the per-call
 * `timeout`) before the response, or its body, arrived. A dependency failure:
 * the breaker counts it, and an idempotent call is retried while the deadline
 * leaves room. When the caller's deadline is what bounded the attempt, the
 * caller gets the deadline's `DeadlineExceededError` instead.
 *
 * @example
 * ```ts
 * try {
 *   await client.json('/slow')
 * } catch (error) {
 *   if (error instanceof FetchTimeoutError) console.log(error.timeout) // the attempt budget in ms
 * }
 * ```
 */
export class FetchTimeoutError extends BallastError {
  static override readonly name: string = 'FetchTimeoutError'

  /** The client's name. */
  readonly client: string
  /** The attempt budget in milliseconds. */
  readonly timeout: number

  constructor(client: string, timeout: number) {
    super(`fetch client "${client}": attempt timed out after ${Math.round(timeout)} ms`, { code: 'BALLAST_FETCH_TIMEOUT', status: 504 })
    this.client = client
    this.timeout = timeout
  }
}

/**
 * The caller's deadline leaves less than `minBudget` for the call: it failed
 * fast, without opening a socket (counted in `ballast_fetch_fail_fast_total`).
 *
 * @example
 * ```ts
 * const stock = await inventory.json('/stock/42').catch((error) => {
 *   if (error instanceof FetchBudgetError) return cachedStock // no time left to ask
 *   throw error
 * })
 * ```
 */
export class FetchBudgetError extends BallastError {
  static override readonly name: string = 'FetchBudgetError'

  readonly client: string
  /** The budget that was left, in ms. */
  readonly budget: number
  /** The client's `minBudget`. */
  readonly minBudget: number

  constructor(client: string, budget: number, minBudget: number) {
    super(`fetch client "${client}": ${Math.max(0, Math.floor(budget))} ms left, below minBudget ${minBudget} ms; not sent`, {
      code: 'BALLAST_FETCH_BUDGET',
      status: 504,
    })
    this.client = client
    this.budget = budget
    this.minBudget = minBudget
  }
}

/**
 * The request could not be sent or its response not read: connection refused,
 * reset, DNS failure, TLS error. `cause` is the platform error (undici's
 * `TypeError: fetch failed` and its own cause).
 *
 * @example
 * ```ts
 * await client.fetch('/x').catch((error) => {
 *   if (error instanceof FetchNetworkError) console.log(error.cause)
 * })
 * ```
 */
export class FetchNetworkError extends BallastError {
  static override readonly name: string = 'FetchNetworkError'

  readonly client: string

  constructor(client: string, cause: unknown) {
    const detail = networkDetail(cause)
    super(`fetch client "${client}": network error${detail === '' ? '' : ` (${detail})`}`, {
      code: 'BALLAST_FETCH_NETWORK',
      status: 502,
      cause,
    })
    this.client = client
  }
}

function networkDetail(cause: unknown): string {
  const parts: string[] = []
  for (const error of errorChain(cause)) {
    const code = codeOf(error)
    parts.push(typeof code === 'string' ? code : error.message)
  }
  return parts.join(': ')
}

/** `value` and the errors it wraps (`cause`), outermost first, four at most (ours, fetch's TypeError, undici's, the socket's). Internal. */
export function* errorChain(value: unknown): Generator<Error> {
  let current = value
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    yield current
    current = current.cause
  }
}

/** An error's `code` (Node's and undici's errors carry one). Internal. */
export const codeOf = (error: Error): unknown => (error as { code?: unknown }).code

/**
 * `json()` got a response that is not 2xx. `upstreamStatus` is what the
 * dependency answered; `status` (what Express answers with on `next(error)`) is
 * 502.
 *
 * @example
 * ```ts
 * const user = await users.json(`/users/${id}`).catch((error) => {
 *   if (error instanceof FetchStatusError && error.upstreamStatus === 404) return undefined
 *   throw error
 * })
 * ```
 */
export class FetchStatusError extends BallastError {
  static override readonly name: string = 'FetchStatusError'

  readonly client: string
  readonly upstreamStatus: number
  readonly url: string

  constructor(client: string, upstreamStatus: number, url: string) {
    super(`fetch client "${client}": ${url} answered ${upstreamStatus}`, { code: 'BALLAST_FETCH_STATUS', status: 502 })
    this.client = client
    this.upstreamStatus = upstreamStatus
    this.url = url
  }
}

/**
 * `json()` got a 2xx response whose body is not JSON. It counts as a
 * dependency failure for the breaker and is not retried.
 *
 * @example
 * ```ts
 * await client.json('/report').catch((error) => {
 *   if (error instanceof FetchInvalidJsonError) console.log(error.cause) // the SyntaxError
 * })
 * ```
 */
export class FetchInvalidJsonError extends BallastError {
  static override readonly name: string = 'FetchInvalidJsonError'

  readonly client: string
  readonly url: string

  constructor(client: string, url: string, cause: unknown) {
    super(`fetch client "${client}": ${url} answered a body that is not JSON`, { code: 'BALLAST_FETCH_INVALID_JSON', status: 502, cause })
    this.client = client
    this.url = url
  }
}
