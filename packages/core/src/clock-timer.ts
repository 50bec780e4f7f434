/**
 * A repeating task on one unref'd timer, kept on the clock in place when it was
 * started: the `setTimeout` a test's fake timers install, or the real one they
 * restore. Long-lived owners (a breaker's rolling window, a breaker group's
 * sweep) outlive a test that swaps clocks; one armed on a clock since replaced
 * would fire on a clock nobody drives, so they ask {@link ClockTimer.current}
 * and start again. A handle is cleared only while its clock is still in place:
 * clearing a handle of a clock reset since (node:test's mock timers) can remove
 * another of that clock's timers. A tick of an earlier start does nothing.
 *
 * @example
 * ```ts
 * const sweep = new ClockTimer<Cache>((cache) => {
 *   cache.dropExpired()
 *   if (cache.size > 0) sweep.again(1_000)
 *   else sweep.stop()
 * }, cache)
 * if (!sweep.current) sweep.start(1_000) // on each use
 * ```
 */
export class ClockTimer<A> {
  readonly #tick: (arg: A) => void
  readonly #arg: A
  // The setTimeout it was started on; undefined while stopped.
  #setTimeout: typeof setTimeout | undefined = undefined
  #clearTimeout: typeof clearTimeout = globalThis.clearTimeout
  #timer: NodeJS.Timeout | undefined = undefined
  #generation = 0

  constructor(tick: (arg: A) => void, arg: A) {
    this.#tick = tick
    this.#arg = arg
  }

  /** Started, and on the `setTimeout` in place now: one comparison, for hot paths. */
  get current(): boolean {
    return this.#setTimeout === globalThis.setTimeout
  }

  /** Stops any earlier run, then runs the task in `ms` on the clock in place now. */
  start(ms: number): void {
    this.stop()
    this.#setTimeout = globalThis.setTimeout
    this.#clearTimeout = globalThis.clearTimeout
    this.#arm(ms)
  }

  /**
   * From the task: runs it again in `ms` on the clock it was started on. Nothing
   * when the task stopped it, or started it again (armed already).
   */
  again(ms: number): void {
    if (this.#setTimeout !== undefined && this.#timer === undefined) this.#arm(ms)
  }

  stop(): void {
    if (this.#timer !== undefined && this.#setTimeout === globalThis.setTimeout) this.#clearTimeout(this.#timer)
    this.#timer = undefined
    this.#setTimeout = undefined
    this.#generation++
  }

  #arm(ms: number): void {
    // A static callback with arguments: no closure per arming.
    this.#timer = (this.#setTimeout as typeof setTimeout)(ClockTimer.#fire, ms, this, this.#generation)
    this.#timer.unref()
  }

  static #fire<A>(timer: ClockTimer<A>, generation: number): void {
    if (generation !== timer.#generation) return
    timer.#timer = undefined
    timer.#tick(timer.#arg)
  }
}
