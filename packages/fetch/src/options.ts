import { BREAKER_GROUP_OPTIONS, BREAKER_NAME, type BreakerGroupOptions } from '@ballast/breaker'
import {
  describeValue,
  functionOption,
  MAX_TIMER_DELAY,
  type MetricsOptions,
  type MetricsTarget,
  metricsTarget,
  numberOption,
  objectOption,
  propertyKey,
  stringOption,
} from '@ballast/core'
import { DEFAULT_TIMEOUT_HEADER } from '@ballast/deadline'

export const OWNER = 'createClient'

/**
 * Breaker options of a client: a `Breaker`'s (or, without `baseUrl`, a
 * `BreakerGroup`'s) options minus what the client owns. `name`, `registry` and
 * `prefix` come from the client; the attempt `timeout`, `retry`, `fallback` and
 * `isFailure` are the client's own options, because they must also cover the
 * body read, honour `Retry-After`, return a `Response` and judge responses.
 *
 * @example
 * ```ts
 * const breaker: ClientBreakerOptions = { volumeThreshold: 20, errorThresholdPercentage: 50, resetTimeout: 5_000 }
 * const inventory = createClient({ name: 'inventory', baseUrl: INVENTORY_URL, breaker })
 * ```
 */
export type ClientBreakerOptions = Omit<
  BreakerGroupOptions,
  'name' | 'registry' | 'prefix' | 'timeout' | 'retry' | 'fallback' | 'isFailure'
>

/**
 * Retry policy of a client.
 *
 * @example
 * ```ts
 * createClient({ name: 'catalog', retry: { attempts: 2, delay: 100, maxDelay: 500 } })
 * ```
 */
export interface ClientRetryOptions {
  /** Retries after the first try (1 = try twice). Default 0. */
  attempts: number
  /** Base backoff in ms: retry n waits about `delay * 2^(n-1)`, with jitter. Default 50. */
  delay?: number | undefined
  /** Upper bound of one backoff (not of a `Retry-After`). Default 1 000. */
  maxDelay?: number | undefined
  /** Methods retried. Default the idempotent ones: GET, HEAD, OPTIONS, PUT, DELETE. */
  methods?: readonly string[] | undefined
}

/**
 * Deadline propagation.
 *
 * @example
 * ```ts
 * createClient({ name: 'legacy', propagate: { header: 'x-timeout-ms', margin: 20 } })
 * ```
 */
export interface PropagateOptions {
  /** Request header carrying the attempt budget in ms. Default `request-timeout-ms`. */
  header?: string | undefined
  /** Kept back from the caller's remaining budget for the network hop and the answer, in ms. Default 10. */
  margin?: number | undefined
}

/**
 * Options of {@link createClient}.
 *
 * @example
 * ```ts
 * const options: ClientOptions = { name: 'inventory', baseUrl: 'http://inventory:8080', timeout: 800, retry: { attempts: 1 } }
 * ```
 */
export interface ClientOptions extends MetricsOptions {
  /** Required, `[A-Za-z0-9_.:-]{1,64}`: the `client` metric label and the breaker name. */
  name: string
  /** Relative inputs are resolved against it; every call must stay on its origin. Without it, breakers are per origin. */
  baseUrl?: string | URL | undefined
  /** Per-attempt budget in ms (headers and body), capped by the caller's deadline. Default 10 000. */
  timeout?: number | undefined
  /** Breaker options, or `false` for no breaker. Default: the breaker defaults. */
  breaker?: ClientBreakerOptions | false | undefined
  /** Retries of idempotent calls. Default none. */
  retry?: ClientRetryOptions | undefined
  /** Deadline propagation, or `false` to send no header. */
  propagate?: PropagateOptions | false | undefined
  /** Fail fast (no socket) when less than this many ms are left. Default 1. */
  minBudget?: number | undefined
  /** Which responses are dependency failures. Default: status >= 500 or 429. */
  isFailure?: ((response: Response) => boolean) | undefined
  /** The fetch implementation. Default `globalThis.fetch`. */
  fetch?: typeof fetch | undefined
}

/** Options validated once, at construction. */
export interface ResolvedOptions {
  readonly name: string
  readonly baseUrl: URL | undefined
  readonly timeout: number
  readonly breaker: ClientBreakerOptions | false
  readonly retries: number
  readonly retryDelay: number
  readonly retryMaxDelay: number
  readonly retryMethods: ReadonlySet<string>
  readonly header: string | undefined
  readonly margin: number
  readonly minBudget: number
  readonly isFailure: (response: Response) => boolean
  readonly fetch: typeof fetch
  readonly metrics: MetricsTarget
}

/**
 * The methods retried unless `retry.methods` says otherwise: the idempotent ones.
 *
 * @example
 * ```ts
 * createClient({ name: 'orders', retry: { attempts: 2, methods: [...IDEMPOTENT_METHODS, 'POST'] } }) // POST with idempotency keys
 * ```
 */
export const IDEMPOTENT_METHODS: readonly string[] = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/**
 * Default `isFailure`: a server error or a 429; a 404 is an answer, not a failure.
 *
 * @example
 * ```ts
 * createClient({ name: 'search', isFailure: (response) => isFailureStatus(response) || response.status === 408 })
 * ```
 */
export function isFailureStatus(response: Response): boolean {
  return response.status >= 500 || response.status === 429
}

const BREAKER_OWNED = ['name', 'registry', 'prefix', 'timeout', 'retry', 'fallback', 'isFailure'] as const
const BREAKER_OWNER_OPTION: Record<(typeof BREAKER_OWNED)[number], string> = {
  name: 'name',
  registry: 'registry',
  prefix: 'prefix',
  timeout: 'timeout',
  retry: 'retry',
  fallback: 'the per-call init.fallback',
  isFailure: 'isFailure',
}

function baseUrlOption(value: unknown): URL | undefined {
  if (value === undefined) return undefined
  let url: URL | undefined
  if (value instanceof URL) url = new URL(value.href)
  else if (typeof value === 'string') url = URL.canParse(value) ? new URL(value) : undefined
  else throw new TypeError(`${OWNER}: option "baseUrl" must be an absolute http(s) URL (string or URL), got ${describeValue(value)}`)
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
    throw new RangeError(`${OWNER}: option "baseUrl" must be an absolute http(s) URL without query or hash, got ${describeValue(value)}`)
  }
  return url
}

function breakerOption(value: unknown): ClientBreakerOptions | false {
  if (value === false) return false
  // The group's names: the ones the client sets itself (BREAKER_OWNED) are refused below, with where to set them.
  const breaker = objectOption<Record<string, unknown>>(OWNER, 'breaker', value, BREAKER_GROUP_OPTIONS)
  if (breaker === undefined) return {}
  for (const key of BREAKER_OWNED) {
    if (breaker[key] !== undefined) {
      throw new TypeError(
        `${OWNER}: option "breaker.${key}" is set by the client (use the client's "${BREAKER_OWNER_OPTION[key]}"), got ${describeValue(breaker[key])}`,
      )
    }
  }
  return breaker as ClientBreakerOptions
}

function methodsOption(value: unknown): Set<string> {
  if (value === undefined) return new Set(IDEMPOTENT_METHODS)
  if (!Array.isArray(value))
    throw new TypeError(`${OWNER}: option "retry.methods" must be an array of method names, got ${describeValue(value)}`)
  const methods = new Set<string>()
  for (const method of value) {
    if (typeof method !== 'string' || !TOKEN.test(method)) {
      throw new TypeError(`${OWNER}: option "retry.methods" must be an array of method names, got ${describeValue(value)}`)
    }
    methods.add(method.toUpperCase())
  }
  return methods
}

/**
 * Validates every client option once: a `TypeError` or `RangeError` naming the
 * option and quoting the bad value.
 */
export function resolveOptions(options: ClientOptions): ResolvedOptions {
  const opts = objectOption<ClientOptions>(OWNER, 'options', options, [
    'name',
    'baseUrl',
    'timeout',
    'breaker',
    'retry',
    'propagate',
    'minBudget',
    'isFailure',
    'fetch',
    'registry',
    'prefix',
  ])
  if (opts === undefined) throw new TypeError(`${OWNER}: option "options" must be an object, got undefined`)
  if (opts.name === undefined) throw new TypeError(`${OWNER}: option "name" must be a string matching ${BREAKER_NAME}, got undefined`)
  const name = stringOption(OWNER, 'name', opts.name, undefined, BREAKER_NAME) as string
  const baseUrl = baseUrlOption(opts.baseUrl)
  const timeout = numberOption(OWNER, 'timeout', opts.timeout, 10_000, { min: 1, max: MAX_TIMER_DELAY })
  const breaker = breakerOption(opts.breaker)
  if (breaker !== false && baseUrl !== undefined) {
    // One breaker for the base URL's origin: per-origin bounds would silently do nothing.
    for (const key of ['maxKeys', 'idleTimeout'] as const) {
      if (breaker[key] !== undefined) {
        throw new TypeError(
          `${OWNER}: option "breaker.${key}" bounds the per-origin breakers of a client without "baseUrl"; this one has a single breaker, got ${describeValue(breaker[key])}`,
        )
      }
    }
  }

  const retry = objectOption<ClientRetryOptions>(OWNER, 'retry', opts.retry, ['attempts', 'delay', 'maxDelay', 'methods'])
  if (retry !== undefined && retry.attempts === undefined) {
    throw new TypeError(`${OWNER}: option "retry.attempts" must be an integer >= 0 <= 10, got undefined`)
  }
  const retries = numberOption(OWNER, 'retry.attempts', retry?.attempts, 0, { min: 0, max: 10, integer: true })
  const retryDelay = numberOption(OWNER, 'retry.delay', retry?.delay, 50, { min: 0, max: MAX_TIMER_DELAY })
  const retryMaxDelay = numberOption(OWNER, 'retry.maxDelay', retry?.maxDelay, Math.max(1_000, retryDelay), {
    min: retryDelay,
    max: MAX_TIMER_DELAY,
  })
  const retryMethods = methodsOption(retry?.methods)

  let header: string | undefined
  let margin = 10
  if (opts.propagate !== false) {
    const propagate = objectOption<PropagateOptions>(OWNER, 'propagate', opts.propagate, ['header', 'margin'])
    header = propertyKey(stringOption(OWNER, 'propagate.header', propagate?.header, DEFAULT_TIMEOUT_HEADER, TOKEN).toLowerCase())
    margin = numberOption(OWNER, 'propagate.margin', propagate?.margin, 10, { min: 0, max: MAX_TIMER_DELAY })
  }
  const minBudget = numberOption(OWNER, 'minBudget', opts.minBudget, 1, { min: 0, max: MAX_TIMER_DELAY })
  // A client whose own timeout is below minBudget would fail every call fast, deadline or not.
  if (timeout < minBudget) {
    throw new RangeError(`${OWNER}: option "minBudget" must be <= timeout (${timeout}), got ${describeValue(minBudget)}`)
  }
  const isFailure = functionOption<(response: Response) => boolean>(OWNER, 'isFailure', opts.isFailure) ?? isFailureStatus
  const fetchImpl = functionOption<typeof fetch>(OWNER, 'fetch', opts.fetch) ?? globalThis.fetch
  if (typeof fetchImpl !== 'function')
    throw new TypeError(`${OWNER}: option "fetch" is required where the platform has no fetch, got undefined`)
  const metrics = metricsTarget(OWNER, {
    ...(opts.registry === undefined ? {} : { registry: opts.registry }),
    ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }),
  })
  return {
    name,
    baseUrl,
    timeout,
    breaker,
    retries,
    retryDelay,
    retryMaxDelay,
    retryMethods,
    header,
    margin,
    minBudget,
    isFailure,
    fetch: fetchImpl,
    metrics,
  }
}
