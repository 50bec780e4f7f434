export { AbortLinks } from './abort-links.js'
export { ClockTimer } from './clock-timer.js'
export { BallastError, type BallastErrorOptions, brandAsBallastError, isBallastError, matchesBallastClass } from './errors.js'
export { FastCounter, FastHistogram, incSeries, observeSeries } from './fast-series.js'
export { type Linked, LiveList } from './live-list.js'
export {
  addCollector,
  counter,
  DEFAULT_PREFIX,
  gauge,
  histogram,
  labelProduct,
  type MetricSpec,
  type MetricsOptions,
  type MetricsTarget,
  metricsTarget,
  safeCollect,
  zeroSeries,
} from './metrics.js'
export { type ExpositionSource, metricsHandler } from './metrics-handler.js'
export {
  booleanOption,
  describeValue,
  functionOption,
  listenerArgument,
  MAX_TIMER_DELAY,
  type NumberBounds,
  numberOption,
  objectOption,
  oneOfOption,
  stringOption,
  timerDelay,
} from './options.js'
export { propertyKey } from './property-key.js'
export { methodLabel, OTHER_METHOD, type RoutedRequest, routeLabel, UNMATCHED_ROUTE } from './route-label.js'
export { nextTimerDelay, type QueueHooks, ranOnBusyLoop, TimerQueue, TimerQueues } from './timer-queue.js'
