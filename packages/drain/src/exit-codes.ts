/**
 * Process exit codes, one per shutdown outcome, so an orchestrator (or a person
 * reading `kubectl describe pod`) can tell what happened from the code alone.
 * `1` stays Node's own code for an uncaught exception.
 *
 * @example
 * ```ts
 * const drain = new Drain({ exit: (code) => { if (code !== ExitCode.OK) alert(code); process.exit(code) } })
 * ```
 */
export const ExitCode = {
  /** Every request finished, every hook succeeded. */
  OK: 0,
  /** HTTP drained, but at least one hook threw, rejected or timed out. */
  HOOK_FAILED: 3,
  /** `gracePeriod` elapsed: remaining sockets were destroyed, pending hooks abandoned. */
  GRACE_PERIOD_EXCEEDED: 4,
  /**
   * A second signal arrived while shutting down: exited at once. "Second" counts
   * signals only: the first signal during a `shutdown()` call is not one, nor is a
   * signal within `DUPLICATE_SIGNAL_WINDOW_MS` (500 ms) of the first.
   */
  SECOND_SIGNAL: 5,
} as const

/**
 * One of the {@link ExitCode} values.
 *
 * @example
 * ```ts
 * const code: ExitCodeValue = ExitCode.HOOK_FAILED
 * ```
 */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]
