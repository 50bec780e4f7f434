import { setImmediate } from 'node:timers'
import { nextTimerDelay, ranOnBusyLoop } from '@ballast/core'

/** What {@link AttemptTimeouts} needs of an attempt. */
export interface Expiring {
  /** `performance.now()` at which the attempt times out. */
  readonly expiresAt: number
  /** True once the attempt has an outcome. */
  readonly ended: boolean
  timedOut(): void
}

/**
 * The attempt timeouts of one breaker on a single timer. Every timed attempt of a
 * breaker has the same budget, so expiry order is start order: a FIFO queue, and
 * one Node timer armed for the oldest live attempt, replace a timer per call
 * (whose creation and cancellation were the largest cost of a call). The timer is
 * unref'd while no attempt is live, so an idle breaker never keeps the process
 * alive nor shows up as an active handle.
 *
 * A queue keeps the timer functions in place when it was made. Once a test
 * installs or removes fake timers, {@link AttemptTimeouts.current} turns false:
 * the breaker starts a new queue on the clock now in place (an old timer kept
 * for reuse would fire on a clock nobody drives) and retires this one, which
 * still times the attempts it holds on their clock.
 *
 * The same idea as @ballast/core's `TimerQueues`, specialised: a breaker's budget
 * is fixed, so its queue is held directly instead of looked up per delay. Moving
 * the breaker onto `TimerQueues` was measured at 1.03-1.06x opossum's `fire`
 * against 0.99x with this queue (benchmarks/breaker-micro.ts), past the breaker's
 * "at most opossum" target.
 */
export class AttemptTimeouts<A extends Expiring> {
  #queue: A[] = []
  #head = 0
  #live = 0
  #timer: NodeJS.Timeout | undefined = undefined
  #refed = false
  #retired = false
  // Expiry of the attempt the timer was armed for: when the timer fires, that attempt
  // (and any due no later) times out without asking performance.now(), which fake
  // timers may leave on the real clock (node:test cannot fake it); see TimerQueue.
  #armedFor = 0
  readonly #budget: number
  readonly #setTimeout: typeof setTimeout = globalThis.setTimeout
  readonly #clearTimeout: typeof clearTimeout = globalThis.clearTimeout

  constructor(budget: number) {
    this.#budget = budget
  }

  /** False once the global `setTimeout` is no longer the one this queue arms (fake timers installed or removed). */
  get current(): boolean {
    return this.#setTimeout === globalThis.setTimeout
  }

  /**
   * A new queue of the same budget, on the clock in place now; this one takes no
   * more attempts. Its timer is dropped, not cleared: clearing a handle of a fake
   * clock that was reset since can remove another timer of that clock (node:test's
   * mock timers), and left alone it fires at most once, on an empty queue.
   */
  successor(): AttemptTimeouts<A> {
    this.#retired = true
    if (this.#live === 0) this.#timer = undefined
    return new AttemptTimeouts<A>(this.#budget)
  }

  /** Entries held (live, plus ended ones not yet dropped). */
  get queued(): number {
    return this.#queue.length - this.#head
  }

  add(attempt: A): void {
    this.#queue.push(attempt)
    this.#live++
    if (this.#timer === undefined) {
      this.#timer = this.#setTimeout(this.#fire, this.#budget)
      this.#refed = true
      this.#armedFor = attempt.expiresAt
    } else if (!this.#refed) {
      this.#timer.ref()
      this.#refed = true
    }
  }

  /** An attempt in the queue ended (any outcome). */
  ended(): void {
    this.#live--
    const queue = this.#queue
    let head = this.#head
    while (head < queue.length && (queue[head] as A).ended) head++
    if (head === queue.length) {
      queue.length = 0
      head = 0
    } else if (queue.length - head > 2 * this.#live + 64) {
      // A long-running head holds many ended attempts behind it: drop them.
      this.#queue = queue.slice(head).filter((attempt) => !attempt.ended)
      head = 0
    }
    this.#head = head
    if (this.#live === 0 && this.#refed) {
      this.#timer?.unref()
      this.#refed = false
      if (this.#retired) this.#timer = undefined
    }
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    this.#refed = false
    // Read before the loop: an attempt started by an expiring one's abort listener re-arms.
    const armedFor = this.#armedFor
    // Node arms timers on its whole-millisecond loop clock, so one may run up to 1 ms before
    // the due time: then the clock is right, and the rest is re-armed (never early). A clock
    // further behind is not the timer's (a faked setTimeout with the real performance):
    // then the attempt it was armed for is due.
    const clock = performance.now()
    if (ranOnBusyLoop(armedFor, clock, this.#setTimeout)) {
      // Answers that came in meanwhile are read first (setImmediate of node:timers, never a fake one).
      setImmediate(this.#expire, clock, armedFor)
      return
    }
    this.#expire(clock > armedFor - 1 ? clock : armedFor, armedFor)
  }

  readonly #expire = (now: number, armedFor: number): void => {
    for (;;) {
      const head = this.#queue[this.#head]
      if (head === undefined) return
      if (head.ended) {
        this.#head++
        continue
      }
      if (head.expiresAt > now) break
      head.timedOut() // calls ended(), which advances the head
    }
    const next = this.#queue[this.#head] as A
    // An attempt started meanwhile (by an expiring one's abort listener, or while the
    // expiry waited for the sockets) armed a timer: this one replaces it.
    if (this.#timer !== undefined) this.#clearTimeout(this.#timer)
    this.#timer = this.#setTimeout(this.#fire, nextTimerDelay(next.expiresAt, armedFor))
    this.#refed = true
    this.#armedFor = next.expiresAt
  }

  /**
   * Clears the timer while its clock is in place (see {@link successor}: otherwise
   * it is left to fire once, on an empty queue); the queued attempts are cancelled
   * by their breaker.
   */
  dispose(): void {
    if (this.#timer !== undefined && this.current) this.#clearTimeout(this.#timer)
    this.#timer = undefined
    this.#queue = []
    this.#head = 0
    this.#live = 0
  }
}
