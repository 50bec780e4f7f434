import { setMaxListeners } from 'node:events'
import { Breaker, BreakerGroup, BrokenCircuitError, isDependencyFailure } from '@ballast/breaker'
import { AbortLinks, BallastError, describeValue, LiveList, MAX_TIMER_DELAY, methodLabel } from '@ballast/core'
import { ClientClosedError, Deadline, DeadlineExceededError, encodeTimeout, parseTimeout } from '@ballast/deadline'
import { AttemptScope, type TimeoutReason } from './attempt-scope.js'
import { backoff, retryAfterMs } from './backoff.js'
import { coverBody, discard } from './covered-body.js'
import {
  codeOf,
  errorChain,
  FetchBudgetError,
  FetchInvalidJsonError,
  FetchNetworkError,
  FetchStatusError,
  FetchTimeoutError,
} from './errors.js'
import { FetchMetrics, type FetchObserver, type StatusClass, statusClass } from './metrics.js'
import { type ClientOptions, type ResolvedOptions, resolveOptions } from './options.js'
import { isRedirect, MAX_REDIRECTS, networkError, nextHop } from './redirects.js'

/**
 * Per-call options: the platform's `RequestInit` plus ballast's.
 *
 * @example
 * ```ts
 * await client.fetch('/report', { timeout: 5_000, fallback: () => new Response('[]') })
 * ```
 */
export interface ClientRequestInit extends RequestInit {
  /** Served instead of an error or a failure response (breaker open, timeout, network error, 5xx/429, no budget). */
  fallback?: (() => Response | PromiseLike<Response>) | undefined
  /** This call's attempt budget in ms, instead of the client's `timeout`. */
  timeout?: number | undefined
}

/**
 * A resilient HTTP client, made by {@link createClient}.
 *
 * @example
 * ```ts
 * const client: Client = createClient({ name: 'users', baseUrl: USERS_URL })
 * const user = await client.json<{ id: string }>('/users/42')
 * ```
 */
export interface Client extends Disposable {
  /** The client's name (metric label, breaker name). */
  readonly name: string
  /**
   * The breaker of a client with `baseUrl`; `undefined` with `breaker: false` or
   * without `baseUrl` (then see {@link Client.breakers}).
   */
  readonly breaker: Breaker | undefined
  /** The per-origin breakers of a client without `baseUrl`. */
  readonly breakers: BreakerGroup | undefined
  /** The breaker a call to `input` goes through (created on first use for a new origin). */
  breakerFor(input: string | URL): Breaker | undefined
  /**
   * Like the platform `fetch`: resolves with the Response (also a 5xx or a 429
   * once retries are spent, unless `init.fallback` is given); the body is read
   * under the same attempt budget.
   */
  fetch(input: string | URL, init?: ClientRequestInit): Promise<Response>
  /** Fetches and parses a JSON body; non-2xx answers reject with {@link FetchStatusError}. */
  json<T = unknown>(input: string | URL, init?: ClientRequestInit): Promise<T>
}

/** Marks a response `isFailure` accepted, so that the breaker counts it; the caller still gets the response. */
class FailureResponse extends Error {
  readonly response: Response
  readonly scope: AttemptScope
  constructor(response: Response, scope: AttemptScope) {
    super(`dependency answered ${response.status}`)
    this.response = response
    this.scope = scope
  }
}

/** Wraps what is the caller's doing (its signal, its deadline): neither a failure nor retried. */
class CallerAbort extends Error {
  constructor(cause: unknown) {
    super('aborted by the caller', { cause })
  }
}

/** A json() answer that is no failure but not 2xx either (a 404): rejected after the breaker saw a success. */
interface NotOk {
  readonly notOk: number
}

function isCallerSide(error: unknown): boolean {
  return error instanceof DeadlineExceededError || error instanceof ClientClosedError
}

function isAbortReason(signal: AbortSignal | undefined, error: unknown): boolean {
  return signal?.aborted === true && signal.reason === error
}

/** An AbortSignal, or one of another implementation (a polyfill, jsdom's) that works like it. */
function isSignal(value: unknown): value is AbortSignal {
  return (
    value instanceof AbortSignal ||
    (typeof value === 'object' &&
      value !== null &&
      typeof (value as AbortSignal).aborted === 'boolean' &&
      typeof (value as AbortSignal).addEventListener === 'function' &&
      typeof (value as AbortSignal).removeEventListener === 'function')
  )
}

/** A request fetch refused to send (an invalid header value, a body on a GET): the caller's mistake, which no fallback hides. */
function isRefusedRequest(error: unknown): boolean {
  return (error instanceof TypeError || error instanceof RangeError) && !(error instanceof BallastError)
}

function isNetworkError(error: unknown): boolean {
  if (!(error instanceof TypeError)) return false
  return error.message === 'fetch failed' || error.message === 'terminated' || error.cause !== undefined
}

// What undici would not send as given (a header it forbids, `expect`, a body longer or shorter than
// the caller's content-length): the caller's mistake, like fetch's own TypeErrors. Not a proxy's
// refusal (a 407 through a ProxyAgent comes as UND_ERR_INVALID_ARG too): that is a dependency's answer.
const REFUSED_BEFORE_SENDING = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'])
// How undici's ProxyAgent reports the proxy's own 407 (with the same code as a request it refused).
const PROXY_ANSWER = /^Proxy Authentication Required/

function isRefusedBeforeSending(error: unknown): boolean {
  if (!(error instanceof TypeError)) return false
  // A URL the request itself carries that does not parse (a referrer) fails before fetch starts;
  // one under 'fetch failed' is a redirect's Location: the server's.
  if (error.message !== 'fetch failed') return error.cause instanceof Error && codeOf(error.cause) === 'ERR_INVALID_URL'
  for (const cause of errorChain(error)) {
    if (REFUSED_BEFORE_SENDING.has(codeOf(cause) as string) && !PROXY_ANSWER.test(cause.message)) return true
  }
  return false
}

// Failures another attempt would meet again: the certificate a server presents (OpenSSL's
// verification codes, a wrong host name), TLS spoken to a plain server, a head too large, a
// redirect loop. Still the dependency's failures, counted by the breaker; not retried.
const PERMANENT_CODE =
  /^(?:CERT_\w+|UNABLE_TO_\w+|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH_EXCEEDED|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_WRONG_VERSION_NUMBER|UND_ERR_HEADERS_OVERFLOW)$/

function isPermanentFailure(error: unknown): boolean {
  // The platform fetch's failures come wrapped in a FetchNetworkError; an injected fetch's own
  // error (node-fetch's FetchError) may carry the code itself.
  if (!(error instanceof Error) || (error instanceof BallastError && !(error instanceof FetchNetworkError))) return false
  for (const each of errorChain(error)) {
    const code = codeOf(each)
    if ((typeof code === 'string' && PERMANENT_CODE.test(code)) || each.message === 'redirect count exceeded') return true
  }
  return false
}

/**
 * Whether a request body can be sent again: only the kinds fetch re-reads from the
 * start on every send. A ReadableStream, an async iterable or a Node `Readable` is
 * consumed by the first attempt; a retry would send it empty (or fail), so such a
 * call gets one attempt.
 */
function replayable(body: RequestInit['body']): boolean {
  return (
    body === undefined ||
    body === null ||
    typeof body === 'string' ||
    body instanceof URLSearchParams ||
    body instanceof Blob ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    body instanceof FormData
  )
}

/**
 * The per-origin breaker key: `scheme:host[:port]` (`https:api.example.com`,
 * `http:127.0.0.1:8080`), so `http://h` and `https://h` never share a breaker.
 * Characters outside the breaker-name set become `_` (IPv6 brackets); a key too
 * long for `client:key` to fit 64 characters is cut and suffixed with a hash of
 * the whole origin.
 */
function originKey(clientName: string, origin: string): string {
  let key = origin.replace(/[^A-Za-z0-9_.:-]/g, '_')
  const room = 64 - clientName.length - 1
  if (key.length > room) {
    let hash = 0
    for (const char of origin) hash = (Math.imul(hash, 31) + char.charCodeAt(0)) | 0
    const suffix = `-${(hash >>> 0).toString(36)}`
    key = key.slice(0, Math.max(1, room - suffix.length)) + suffix
  }
  return key
}

function fetchMethodLabel(method: string): string {
  const label = methodLabel(method)
  return label === 'CONNECT' || label === 'TRACE' ? '_OTHER' : label
}

/** Ends a retry pause: early (`aborted`, with the signal's reason) or when its time is up. */
type Pause = (aborted: boolean, reason?: unknown) => void
// Pauses follow the caller's signals through one listener per signal: many calls pausing
// on one shared signal add one listener to it, not one each.
const pauses = new AbortLinks<Pause>((pause, signal) => pause(true, signal.reason))

function sleep(ms: number, signals: readonly (AbortSignal | undefined)[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const followed: AbortSignal[] = []
    let timer: NodeJS.Timeout | undefined
    const finish: Pause = (aborted, reason) => {
      clearTimeout(timer)
      for (const signal of followed) pauses.delete(signal, finish)
      if (aborted) reject(new CallerAbort(reason))
      else resolve()
    }
    for (const signal of signals) {
      if (signal === undefined) continue
      if (signal.aborted) {
        finish(true, signal.reason)
        return
      }
      pauses.add(signal, finish)
      followed.push(signal)
    }
    timer = setTimeout(finish, ms, false)
  })
}

/**
 * Sets the budget header to what is left, or keeps the caller's own value
 * when it asks the callee for less: the header is capped, never raised.
 */
function setBudget(headers: Headers, name: string, left: number): void {
  const asked = parseTimeout(headers.get(name) ?? undefined)
  if (asked === undefined || asked > left) headers.set(name, encodeTimeout(left))
}

type Mode = 'response' | 'json'

/** Where a call goes: the URL to send to and the origin (`scheme:host[:port]`) its breaker is keyed by. */
interface Target {
  readonly href: string
  readonly origin: string
}

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/
const NO_INIT: RequestInit = Object.freeze({})

// What the platform fetch reads of an init (the standard's RequestInit, and undici's
// dispatcher), by name: an init may inherit them (a Request passed as init, an object
// made with Object.create), and fetch reads those too.
const REQUEST_INIT = [
  'method',
  'headers',
  'body',
  'referrer',
  'referrerPolicy',
  'mode',
  'credentials',
  'cache',
  'redirect',
  'integrity',
  'keepalive',
  'signal',
  'window',
  'duplex',
  'priority',
  'dispatcher',
] as const

/**
 * What fetch gets of the caller's init: its own members but ballast's options (an
 * injected fetch may read more than the standard's, Next.js its `next`), plus the
 * RequestInit members it inherits. A plain init without ballast's options is passed as it is.
 */
function requestInit(init: ClientRequestInit): RequestInit {
  const prototype: unknown = Object.getPrototypeOf(init)
  const plain = prototype === Object.prototype || prototype === null
  if (plain && init.fallback === undefined && init.timeout === undefined) return init
  const { fallback: _fallback, timeout: _timeout, ...own } = init
  const copy: Record<string, unknown> = own
  if (!plain) {
    const members = init as Record<string, unknown>
    for (const name of REQUEST_INIT) {
      if (!(name in copy) && members[name] !== undefined) copy[name] = members[name]
    }
  }
  return copy
}

class ResilientClient implements Client {
  readonly name: string
  readonly breaker: Breaker | undefined
  readonly breakers: BreakerGroup | undefined
  readonly #options: ResolvedOptions
  readonly #observer: FetchObserver
  readonly #basePrefix: string
  readonly #baseOrigin: string
  readonly #timeoutReason: TimeoutReason
  /** Attempts not yet released (request or body in flight): aborted when the client is disposed. */
  readonly #live = new LiveList<AttemptScope>()
  #disposed: BallastError | undefined = undefined
  // Aborted on dispose: ends the retry pauses, which have no attempt in flight to abort.
  readonly #disposal = new AbortController()

  constructor(options: ClientOptions) {
    const o = resolveOptions(options)
    this.#options = o
    const base = o.baseUrl
    this.#basePrefix = base === undefined ? '' : base.origin + (base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname)
    this.#baseOrigin = base === undefined ? '' : base.protocol + base.host
    this.name = o.name
    this.#timeoutReason = (budget, deadlineBound, deadline) =>
      deadlineBound
        ? new DeadlineExceededError(
            `deadline exceeded: no budget left to wait for "${this.name}"`,
            deadline === undefined ? {} : { timeout: deadline.timeout },
          )
        : new FetchTimeoutError(this.name, budget)
    this.#observer = new FetchMetrics(o.metrics, o.name)
    setMaxListeners(0, this.#disposal.signal)
    if (o.breaker === false) {
      this.breaker = undefined
      this.breakers = undefined
      return
    }
    const isFailure = (error: unknown): boolean => {
      if (error instanceof CallerAbort) return false
      // A 504 to an attempt whose budget was the caller's deadline: the callee ran out of the
      // budget we sent it (request-timeout-ms), a hair before our own timer would have. That is
      // the caller's deadline expiring, not the dependency failing.
      if (error instanceof FailureResponse && error.response.status === 504 && error.scope.deadlineBound) return false
      return isDependencyFailure(error)
    }
    const shared = { ...o.breaker, timeout: false as const, isFailure, registry: o.metrics.registry, prefix: o.metrics.prefix }
    if (o.baseUrl !== undefined) {
      const { maxKeys: _maxKeys, idleTimeout: _idleTimeout, ...single } = shared
      this.breaker = new Breaker({ ...single, name: o.name })
      this.breakers = undefined
    } else {
      this.breaker = undefined
      this.breakers = new BreakerGroup({ ...shared, name: o.name })
    }
  }

  breakerFor(input: string | URL): Breaker | undefined {
    return this.#breakerFor(this.#resolve(input))
  }

  fetch(input: string | URL, init?: ClientRequestInit): Promise<Response> {
    return this.#call(input, init, 'response') as Promise<Response>
  }

  json<T = unknown>(input: string | URL, init?: ClientRequestInit): Promise<T> {
    return this.#call(input, init, 'json') as Promise<T>
  }

  /**
   * Aborts the calls in flight (request or body read: sockets and timers are freed now,
   * callers get `BALLAST_FETCH_DISPOSED`), then disposes the breaker(s).
   */
  [Symbol.dispose](): void {
    if (this.#disposed === undefined) {
      const error = new BallastError(`fetch client "${this.name}" is disposed`, { code: 'BALLAST_FETCH_DISPOSED', status: 503 })
      this.#disposed = error
      for (const scope of this.#live.snapshot()) scope.dispose(error)
      this.#disposal.abort(error)
    }
    this.breaker?.[Symbol.dispose]()
    this.breakers?.[Symbol.dispose]()
  }

  #breakerFor(target: Target): Breaker | undefined {
    if (this.breaker !== undefined) return this.breaker
    if (this.breakers === undefined) return undefined
    return this.breakers.get(originKey(this.name, target.origin))
  }

  #resolve(input: string | URL): Target {
    const base = this.#options.baseUrl
    if (typeof input === 'string' && base !== undefined && !SCHEME.test(input)) {
      // Joined, not resolved: `/stock/1` on `http://h/api` is `http://h/api/stock/1`. No parse: the hot path.
      return { href: this.#basePrefix + (input.startsWith('/') || input.startsWith('?') ? '' : '/') + input, origin: this.#baseOrigin }
    }
    let url: URL
    if (input instanceof URL) url = input
    else if (typeof input !== 'string')
      throw new TypeError(`${this.name}.fetch: input must be a string or a URL, got ${describeValue(input)}`)
    else if (URL.canParse(input)) url = new URL(input)
    else if (base === undefined)
      throw new TypeError(`${this.name}.fetch: input must be an absolute URL when the client has no baseUrl, got ${describeValue(input)}`)
    else
      throw new TypeError(
        `${this.name}.fetch: input must be a path or a valid URL on the baseUrl origin ${base.origin}, got ${describeValue(input)}`,
      )
    if (base !== undefined && url.origin !== base.origin) {
      throw new TypeError(`${this.name}.fetch: input must stay on the baseUrl origin ${base.origin}, got ${describeValue(url.href)}`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`${this.name}.fetch: input must be an http(s) URL, got ${describeValue(url.href)}`)
    }
    return { href: url.href, origin: url.protocol + url.host }
  }

  async #call(input: string | URL, given: ClientRequestInit | null | undefined, mode: Mode): Promise<unknown> {
    if (this.#disposed !== undefined) throw this.#disposed
    if (given !== undefined && given !== null && typeof given !== 'object') {
      throw new TypeError(`${this.name}.${mode === 'json' ? 'json' : 'fetch'}: "init" must be an object, got ${describeValue(given)}`)
    }
    // null is no init, as for the platform fetch.
    const init = given ?? undefined
    const fallback = init?.fallback
    const callTimeout = init?.timeout
    // What fetch gets: the caller's init minus ballast's own options.
    const rest: RequestInit = init === undefined ? NO_INIT : requestInit(init)
    if (fallback !== undefined && typeof fallback !== 'function') {
      throw new TypeError(`${this.name}.fetch: option "fallback" must be a function, got ${describeValue(fallback)}`)
    }
    if (callTimeout !== undefined && !(typeof callTimeout === 'number' && callTimeout >= 1 && callTimeout <= MAX_TIMER_DELAY)) {
      throw new RangeError(
        `${this.name}.fetch: option "timeout" must be a number >= 1 <= ${MAX_TIMER_DELAY}, got ${describeValue(callTimeout)}`,
      )
    }
    // Such a call could never be sent: every one would fail fast, as if its deadline were spent.
    if (callTimeout !== undefined && callTimeout < this.#options.minBudget) {
      throw new RangeError(
        `${this.name}.fetch: option "timeout" must be >= the client's minBudget (${this.#options.minBudget}), got ${describeValue(callTimeout)}`,
      )
    }
    const method = (rest.method ?? 'GET').toUpperCase()
    const label = fetchMethodLabel(method)
    const url = this.#resolve(input)
    const callerSignal = rest.signal ?? undefined
    if (callerSignal !== undefined && !isSignal(callerSignal)) {
      throw new TypeError(
        `${this.name}.${mode === 'json' ? 'json' : 'fetch'}: option "signal" must be an AbortSignal, got ${describeValue(callerSignal)}`,
      )
    }
    let outcome: { value: unknown; status: StatusClass }
    try {
      outcome = await this.#attempts(url, method, rest, callTimeout ?? this.#options.timeout, callerSignal, mode)
    } catch (error) {
      if (fallback === undefined || isAbortReason(callerSignal, error) || isRefusedRequest(error)) {
        this.#observer.request(label, 'error')
        throw error
      }
      return this.#serveFallback(fallback, label, mode, error)
    }
    if (fallback !== undefined && outcome.value instanceof FailureResponse) {
      discard(outcome.value.response, outcome.value.scope)
      return this.#serveFallback(fallback, label, mode, undefined, outcome.value.response.status, url.href)
    }
    this.#observer.request(label, outcome.status)
    if (outcome.value instanceof FailureResponse) {
      const { response, scope } = outcome.value
      if (mode === 'response') return coverBody(response, scope, (error) => this.#translate(error, scope, false))
      discard(response, scope)
      throw new FetchStatusError(this.name, response.status, url.href)
    }
    if (mode === 'json' && typeof outcome.value === 'object' && outcome.value !== null && 'notOk' in outcome.value) {
      throw new FetchStatusError(this.name, (outcome.value as NotOk).notOk, url.href)
    }
    return outcome.value
  }

  /**
   * Answers with the fallback. Counted `fallback` only when the caller gets an answer
   * from it: a fallback that throws, returns no `Response`, or (for `json()`) a body
   * that is not JSON is the caller's error, counted `error`, with what the call itself
   * failed with as its cause: `error`, or for a failure response (`status` of `href`)
   * the `FetchStatusError` the caller would have got, built only then.
   */
  async #serveFallback(
    fallback: () => Response | PromiseLike<Response>,
    label: string,
    mode: Mode,
    error: unknown,
    status?: number,
    href?: string,
  ): Promise<unknown> {
    let answer: unknown
    try {
      const response: unknown = await fallback()
      if (!(response instanceof Response)) {
        throw new TypeError(`${this.name}: option "fallback" must return a Response, got ${describeValue(response)}`)
      }
      answer = mode === 'json' ? await response.json() : response
    } catch (thrown) {
      this.#observer.request(label, 'error')
      const cause = status === undefined ? error : new FetchStatusError(this.name, status, href as string)
      if (cause !== undefined && typeof thrown === 'object' && thrown !== null && (thrown as { cause?: unknown }).cause === undefined) {
        Object.defineProperty(thrown, 'cause', { value: cause, configurable: true, writable: true })
      }
      throw thrown
    }
    this.#observer.request(label, 'fallback')
    return answer
  }

  async #attempts(
    url: Target,
    method: string,
    init: RequestInit,
    timeout: number,
    callerSignal: AbortSignal | undefined,
    mode: Mode,
  ): Promise<{ value: unknown; status: StatusClass }> {
    const o = this.#options
    const deadline = Deadline.current()
    let breaker = this.#breakerFor(url)
    const retryable = o.retries > 0 && o.retryMethods.has(method) && replayable(init.body)
    let last: FailureResponse | undefined
    let lastError: unknown
    for (let n = 0; ; n++) {
      if (callerSignal?.aborted === true) throw callerSignal.reason
      // Attempt budget now: min(timeout, deadline remaining − margin), and whether the deadline is the bound.
      let budget = timeout
      let deadlineBound = false
      if (deadline !== undefined) {
        const left = deadline.remaining() - o.margin
        if (left < timeout) {
          budget = Math.max(0, left)
          deadlineBound = true
        }
      }
      if (budget < o.minBudget || budget <= 0) {
        if (n > 0) break
        this.#observer.failFast()
        if (deadline !== undefined && (deadline.expired as boolean)) throw deadline.reason
        throw new FetchBudgetError(this.name, budget, o.minBudget)
      }
      if (n > 0) {
        // Asked again: a per-origin breaker idle during the pause may have been evicted (disposed);
        // its key then has a new one. The breaker may have opened during the pause: the failure in
        // hand is the caller's answer.
        breaker = this.#breakerFor(url)
        if (breaker !== undefined && breaker.state !== 'closed') break
        this.#observer.retry()
      }
      if (last !== undefined) discard(last.response, last.scope)
      last = undefined
      lastError = undefined
      try {
        // The breaker's own attempt signal is not read: it has no timer here (the scope times the
        // attempt, body included) and the caller's deadline is linked to the scope directly.
        const send = () => this.#attempt(url, init, budget, deadlineBound, deadline, callerSignal, mode)
        const value = breaker === undefined ? await send() : await breaker.execute(send)
        const status = mode === 'json' ? '2xx' : statusClass((value as Response).status)
        if (mode === 'json' && typeof value === 'object' && value !== null && 'notOk' in value) {
          return { value, status: statusClass((value as NotOk).notOk) }
        }
        return { value, status }
      } catch (error) {
        // Disposed mid-call: the breaker's own disposal may have answered first; the caller gets the client's.
        if (this.#disposed !== undefined) throw this.#disposed
        if (error instanceof CallerAbort) throw error.cause
        if (isCallerSide(error) || isAbortReason(callerSignal, error)) throw error
        if (error instanceof FailureResponse) last = error
        else lastError = error
        if (!retryable || n >= o.retries || error instanceof FetchInvalidJsonError || error instanceof BrokenCircuitError) break
        if (isPermanentFailure(error)) break
        // Open or half-open: no retry. Disabled (disposed): no retry, unless it is a per-origin
        // breaker evicted meanwhile, whose origin gets a new one after the pause.
        const state = breaker?.state
        if (state === 'open' || state === 'half-open' || (state === 'disabled' && this.breakers === undefined)) break
        let wait = backoff(n + 1, o.retryDelay, o.retryMaxDelay)
        const room = deadline === undefined ? timeout : deadline.remaining() - o.margin - Math.max(1, o.minBudget)
        const status = last?.response.status
        if (status === 429 || status === 503) {
          const asked = retryAfterMs(last?.response.headers.get('retry-after'))
          if (asked !== undefined) {
            if (asked > room) break
            wait = Math.max(wait, asked)
          }
        }
        if (wait > room) break
        // The failed response is kept (not discarded) until the next attempt is really sent: if the
        // deadline leaves no room for it after the pause, that response is the caller's answer.
        try {
          await sleep(wait, [deadline?.signal, callerSignal, this.#disposal.signal])
        } catch (aborted) {
          throw aborted instanceof CallerAbort ? aborted.cause : aborted
        }
      }
    }
    if (last !== undefined) return { value: last, status: statusClass(last.response.status) }
    throw lastError
  }

  async #attempt(
    url: Target,
    init: RequestInit,
    budget: number,
    deadlineBound: boolean,
    deadline: Deadline | undefined,
    callerSignal: AbortSignal | undefined,
    mode: Mode,
  ): Promise<unknown> {
    const o = this.#options
    const scope = new AttemptScope(budget, deadlineBound, deadline, this.#timeoutReason, this.#live)
    // With a budget header, redirects are followed here, so each hop is told what is left at its own send.
    // Not with `integrity`, which fetch checks against the final response only: it follows those itself.
    const follow = o.header !== undefined && (init.redirect === undefined || init.redirect === 'follow') && !init.integrity
    let response: Response
    try {
      scope.linkDeadline()
      scope.linkCaller(callerSignal)
      let headers: RequestInit['headers'] = init.headers
      if (o.header !== undefined) {
        // Measured now, at send time, so the callee is never promised more than is left.
        const left = this.#budgetLeft(scope, deadline)
        if (init.headers === undefined || init.headers === null) headers = { [o.header]: encodeTimeout(left) }
        else {
          // Headers fetch would refuse throw here, as fetch's own TypeError: the caller's, translated below.
          const copy = new Headers(init.headers)
          setBudget(copy, o.header, left)
          headers = copy
        }
      }
      const signal = scope.signal
      const sent: RequestInit =
        init === NO_INIT
          ? headers === undefined
            ? { signal }
            : { headers, signal }
          : headers === undefined
            ? { ...init, signal }
            : { ...init, headers, signal }
      if (follow) sent.redirect = 'manual'
      response = await o.fetch(url.href, sent)
      if (follow && isRedirect(response)) response = await this.#follow(response, url.href, sent, scope, deadline)
    } catch (error) {
      scope.release()
      throw this.#translate(error, scope, true)
    }
    let failed: boolean
    try {
      failed = o.isFailure(response)
    } catch (error) {
      // A throwing predicate is the caller's bug, not the dependency's: the response is dropped
      // (its timer and connection freed), the caller gets the error, the breaker does not count it.
      discard(response, scope)
      throw new CallerAbort(error)
    }
    if (failed) throw new FailureResponse(response, scope)
    if (mode === 'response') return coverBody(response, scope, (error) => this.#translate(error, scope, false))
    if (!response.ok) {
      discard(response, scope)
      return { notOk: response.status } satisfies NotOk
    }
    let text: string
    try {
      text = await response.text()
    } catch (error) {
      throw this.#translate(error, scope, true)
    } finally {
      scope.release()
    }
    if (response.status === 204 || (text === '' && response.status === 205)) return undefined
    try {
      return JSON.parse(text) as unknown
    } catch (error) {
      throw new FetchInvalidJsonError(this.name, url.href, error)
    }
  }

  /** The budget a request sent now may be promised: the attempt's, within the caller's deadline less the margin. */
  #budgetLeft(scope: AttemptScope, deadline: Deadline | undefined): number {
    return deadline === undefined ? scope.remaining() : Math.min(scope.remaining(), deadline.remaining() - this.#options.margin)
  }

  /**
   * Follows the redirects fetch was asked to leave to the client (as fetch itself
   * would, see nextHop), under the same attempt signal, sending each hop the
   * budget left at its own send.
   */
  async #follow(
    response: Response,
    href: string,
    sent: RequestInit,
    scope: AttemptScope,
    deadline: Deadline | undefined,
  ): Promise<Response> {
    const o = this.#options
    // An injected fetch that hides redirects (a browser-like one): let it follow them itself.
    if (response.type === 'opaqueredirect') return o.fetch(href, { ...sent, redirect: 'follow' })
    let current = response
    let target = href
    let request = sent
    for (let hops = 0; ; hops++) {
      const hop = nextHop(current, target, request, replayable(request.body))
      if (hop === undefined) {
        if (hops > 0) Object.defineProperty(current, 'redirected', { value: true, enumerable: true })
        return current
      }
      current.body?.cancel().catch(() => undefined)
      if (hop instanceof TypeError) throw hop
      if (hops === MAX_REDIRECTS) throw networkError('redirect count exceeded')
      setBudget(hop.init.headers, o.header as string, this.#budgetLeft(scope, deadline))
      target = hop.href
      request = hop.init
      current = await o.fetch(target, request)
    }
  }

  /**
   * The error a caller sees for a failed send or body read. Inside the breaker
   * (`forBreaker`), what the caller did (its signal, its deadline) is wrapped so
   * the breaker does not count it.
   */
  #translate(error: unknown, scope: AttemptScope, forBreaker: boolean): unknown {
    const source = scope.source
    let result: unknown = error
    let callerSide = false
    if (source !== undefined) {
      result = scope.signal.reason
      callerSide = source === 'caller' || source === 'deadline' || source === 'disposed' || isCallerSide(result)
    } else if (isRefusedBeforeSending(error)) {
      // fetch's own TypeError, as for a request it refuses itself.
      callerSide = true
    } else if (isNetworkError(error)) {
      result = new FetchNetworkError(this.name, error)
    } else if (error instanceof TypeError || error instanceof RangeError) {
      // A request fetch refused to send (a bad header value): the caller's bug, not the dependency's.
      callerSide = true
    }
    return forBreaker && callerSide ? new CallerAbort(result) : result
  }
}

/**
 * Creates a resilient HTTP client on the platform `fetch`: every attempt gets
 * `min(timeout, deadline remaining − margin)` (headers and body), the budget is
 * sent downstream in `request-timeout-ms`, calls below `minBudget` fail fast,
 * idempotent calls are retried with backoff and jitter while the breaker is
 * closed and the deadline leaves room, and `init.fallback` answers for failures.
 * Options are validated here, once.
 *
 * @example
 * ```ts
 * const inventory = createClient({ name: 'inventory', baseUrl: 'http://inventory:8080', timeout: 800, retry: { attempts: 1 } })
 * app.get('/orders/:id', deadline({ timeout: 500 }), async (req, res) => {
 *   const stock = await inventory.json(`/stock/${req.params.id}`, { fallback: () => Response.json(cache.get(req.params.id) ?? null) })
 *   res.json({ id: req.params.id, stock })
 * })
 * ```
 */
export function createClient(options: ClientOptions): Client {
  return new ResilientClient(options)
}
