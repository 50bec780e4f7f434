export type { CallContext } from './attempt.js'
export {
  BREAKER_NAME,
  Breaker,
  type BreakerOptions,
  type BreakerState,
  type ExecuteOptions,
  type FallbackContext,
  type FallbackEvent,
  type FallbackReason,
  isDependencyFailure,
  type RejectEvent,
  type RetryOptions,
  type StateChangeEvent,
} from './breaker.js'
export { BREAKER_GROUP_OPTIONS, BreakerGroup, type BreakerGroupOptions } from './breaker-group.js'
export { DURATION_BUCKETS } from './breaker-metrics.js'
export { BreakerTimeoutError, BrokenCircuitError, type RejectionReason } from './errors.js'
export type { Listener } from './events.js'
