export { type Client, type ClientRequestInit, createClient } from './client.js'
export { FetchBudgetError, FetchInvalidJsonError, FetchNetworkError, FetchStatusError, FetchTimeoutError } from './errors.js'
export type { StatusClass } from './metrics.js'
export {
  type ClientBreakerOptions,
  type ClientOptions,
  type ClientRetryOptions,
  IDEMPOTENT_METHODS,
  isFailureStatus,
  type PropagateOptions,
} from './options.js'
