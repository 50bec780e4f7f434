export type { CloseReason, DrainableServer } from './connection-tracker.js'
export {
  Drain,
  type DrainLogger,
  type DrainOptions,
  type DrainState,
  DUPLICATE_SIGNAL_WINDOW_MS,
  type HookEndEvent,
  type HookOptions,
  type HookOutcome,
  type HookReport,
  type ShutdownOutcome,
  type ShutdownReport,
  type StateChangeEvent,
} from './drain.js'
export { observeDrain } from './drain-metrics.js'
export { DrainHookTimeoutError, DrainingError, GracePeriodExceededError } from './errors.js'
export { DrainEvent } from './events.js'
export { ExitCode, type ExitCodeValue } from './exit-codes.js'
