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
  readonly #budget: number

  constructor(budget: number) {
    this.#budget = budget
  }

  /** Entries held (live, plus ended ones not yet dropped). */
  get queued(): number {
    return this.#queue.length - this.#head
  }

  add(attempt: A): void {
    this.#queue.push(attempt)
    this.#live++
    if (this.#timer === undefined) {
      this.#timer = setTimeout(this.#fire, this.#budget)
      this.#refed = true
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
    }
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    this.#refed = false
    const now = performance.now()
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
    // An attempt started by an expiring one's abort listener armed a timer meanwhile: this one replaces it.
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(next.expiresAt - now)))
    this.#refed = true
  }

  /** Clears the timer; the queued attempts are cancelled by their breaker. */
  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#queue = []
    this.#head = 0
    this.#live = 0
  }
}
