export { Deadline, type DeadlineOptions, withDeadline, withoutDeadline } from './deadline.js'
export {
  DeadlineMetrics,
  type ExceededReason,
  MAX_MOUNTS_PER_ROUTE,
  MAX_ROUTE_LABELS,
  type MountedRequest,
  OTHER_MOUNT,
  OTHER_ROUTES,
  type RouteSeries,
} from './deadline-metrics.js'
export { type DeadlineMiddlewareOptions, deadline, requestDeadline, type TimeoutHandler } from './deadline-middleware.js'
export {
  ClientClosedError,
  DeadlineCancelledError,
  DeadlineExceededError,
  type DeadlineExceededErrorOptions,
  type DeadlineSource,
  rootDeadlineSource,
} from './errors.js'
export { DEFAULT_TIMEOUT_HEADER, encodeTimeout, MAX_HEADER_TIMEOUT, parseTimeout } from './timeout-header.js'
