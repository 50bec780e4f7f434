import { setTimeout as nodeSetTimeout } from 'node:timers'
/**
 * What {@link TimerQueues} needs to know about the items it times.
 *
 * @example
 * ```ts
 * const hooks: QueueHooks<Job> = {
 *   expiresAt: (job) => job.dueAt, // performance.now() based
 *   queued: (job, queue) => job.queue === queue,
 *   fire: (job) => job.expire(), // must take the job out: job.queue = undefined; queue.removed()
 * }
 * ```
 */
export interface QueueHooks<T> {
  /** `performance.now()` at which `item` is due. */
  expiresAt(item: T): number
  /** False once `item` left the queue it was added to (disposed, aborted, fired). */
  queued(item: T, queue: TimerQueue<T>): boolean
  /** `item` is due: expire it, which takes it out of the queue (its `queued` turns false, then `removed()`). */
  fire(item: T): void
}

/**
 * The delay to re-arm a queue's timer with, for its next item (due at `due`),
 * once the timer armed for the item due at `armedFor` has fired: counted from
 * `armedFor` when `performance.now()` is behind it. The fired timer shows that its
 * clock reached `armedFor`; `performance.now()` may be on another clock (fake
 * timers that leave `performance` real, as node:test's do, or a fake
 * `performance` installed after the items were queued, restarting near 0), and
 * counting from it would wait a whole delay, or the process's uptime, more.
 * On one clock it changes nothing but Node's sub-millisecond rounding. At least 1.
 *
 * @example
 * ```ts
 * timer = setTimeout(onTimer, nextTimerDelay(next.expiresAt, armedFor))
 * armedFor = next.expiresAt
 * ```
 */
export function nextTimerDelay(due: number, armedFor: number): number {
  return Math.max(1, Math.ceil(due - Math.max(performance.now(), armedFor)))
}

/**
 * Whether a timer due at `due` ran on a loop that was busy past it: more than
 * 1 ms late at `now` (Node's own lateness is under 1 ms), on Node's real timers
 * (`armedWith` is the `setTimeout` that armed it). A turn of the loop runs due
 * timers before it reads sockets, so a timer that decides a dependency was slow
 * (an attempt timeout) should let the loop read them first when this is true: an
 * answer already received then ends the attempt, and a busy caller is not
 * counted as a slow dependency. Under fake timers it is false: the real clock then
 * says only how fast the test runs.
 *
 * @example
 * ```ts
 * if (ranOnBusyLoop(attempt.expiresAt, performance.now())) setImmediate(timeOut, attempt) // node:timers
 * else timeOut(attempt)
 * ```
 */
export function ranOnBusyLoop(due: number, now: number, armedWith: typeof setTimeout = globalThis.setTimeout): boolean {
  return now > due + 1 && armedWith === nodeSetTimeout
}

// Queues kept while idle (their timer unref'd, dropped when it fires with nothing
// due); past this many distinct delays, an emptied queue is dropped at once.
const IDLE_QUEUES = 64

/**
 * The items of one delay (whole milliseconds) of a {@link TimerQueues}, on a
 * single Node timer armed for the oldest live one. Items of one delay expire in
 * the order they were added, so a FIFO queue is enough, and it replaces a Node
 * `Timeout` per item (whose creation, async-resource setup and cancellation were
 * the largest cost of a request's deadline). This is what Node does inside with
 * one list per duration, minus the per-timer object. The timer is unref'd while
 * nothing is queued, so an idle queue neither keeps the process alive nor shows
 * as an active handle; with items queued it is one active `Timeout`. Made by
 * {@link TimerQueues.add}; the owner of an item calls {@link TimerQueue.removed}
 * when the item leaves it.
 *
 * @example
 * ```ts
 * job.queue = queues.add(Math.ceil(ms), job)
 * // later, when the job ends first (or in hooks.fire):
 * const queue = job.queue
 * job.queue = undefined
 * queue?.removed()
 * ```
 */
export class TimerQueue<T> {
  readonly #delay: number
  readonly #hooks: QueueHooks<T>
  readonly #all: Map<number, TimerQueue<T>>
  // The timer functions in place when the queue was made: a test that installs
  // fake timers (or removes them) gets a new queue on the clock it set, and an
  // older queue is not stranded with a timer of a clock that is gone.
  readonly #setTimeout: typeof setTimeout = globalThis.setTimeout
  readonly #clearTimeout: typeof clearTimeout = globalThis.clearTimeout
  #items: T[] = []
  #head = 0
  #live = 0
  #timer: NodeJS.Timeout | undefined = undefined
  #refed = false
  #firing = false
  // Due time of the item the timer was armed for: when the timer fires, that item
  // (and any due no later) is expired without consulting the clock again, as a
  // timer per deadline would (and as fake timers in tests expect).
  #armedFor = 0

  private constructor(delay: number, hooks: QueueHooks<T>, all: Map<number, TimerQueue<T>>) {
    this.#delay = delay
    this.#hooks = hooks
    this.#all = all
  }

  /** Used by {@link TimerQueues.add}. */
  static add<T>(all: Map<number, TimerQueue<T>>, hooks: QueueHooks<T>, delay: number, item: T): TimerQueue<T> {
    let queue = all.get(delay)
    if (queue === undefined || queue.#setTimeout !== globalThis.setTimeout) {
      queue = new TimerQueue(delay, hooks, all)
      all.set(delay, queue)
    }
    queue.#add(item)
    return queue
  }

  /** Deadlines queued and not yet removed. */
  get live(): number {
    return this.#live
  }

  #add(item: T): void {
    this.#items.push(item)
    this.#live++
    if (this.#firing) return // armed when the firing loop ends
    if (this.#timer === undefined) {
      this.#timer = this.#setTimeout(this.#onTimer, this.#delay)
      this.#refed = true
      this.#armedFor = this.#hooks.expiresAt(item)
    } else if (!this.#refed) {
      this.#timer.ref()
      this.#refed = true
    }
  }

  /** An item of this queue left it (its `queued` hook now says false). */
  removed(): void {
    this.#live--
    const items = this.#items
    const hooks = this.#hooks
    let head = this.#head
    while (head < items.length && !hooks.queued(items[head] as T, this)) head++
    if (this.#live === 0) {
      // Under steady load the queue empties after nearly every item. Popping a
      // short array keeps its backing store for the next push, where `length = 0`
      // would drop it and make every push allocate a new one.
      if (items.length <= 16) while (items.length > 0) items.pop()
      else items.length = 0
      head = 0
      if (this.#refed) {
        this.#timer?.unref()
        this.#refed = false
      }
      if (this.#all.size > IDLE_QUEUES && !this.#firing) this.#drop()
    } else if (items.length > 2 * this.#live + 64) {
      // A queue that never empties (requests overlapping without a pause) keeps its
      // removed items before the head, and a long-lived head keeps those behind it.
      // Dropping them once they outnumber the live ones bounds the array to about
      // twice its live items, at a constant cost per removal on average.
      this.#items = items.slice(head).filter((item) => hooks.queued(item, this))
      head = 0
    }
    this.#head = head
  }

  #drop(): void {
    // Cleared only while its clock is in place: clearing a handle of a clock that was
    // reset since (node:test's mock timers) can remove another of its timers. Left
    // alone, it fires at most once, on an empty queue.
    if (this.#timer !== undefined && this.#setTimeout === globalThis.setTimeout) this.#clearTimeout(this.#timer)
    this.#timer = undefined
    this.#refed = false
    if (this.#all.get(this.#delay) === this) this.#all.delete(this.#delay)
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined
    this.#refed = false
    this.#firing = true
    const hooks = this.#hooks
    let now = Math.max(performance.now(), this.#armedFor)
    try {
      for (;;) {
        const head = this.#items[this.#head]
        if (head === undefined) break
        if (!hooks.queued(head, this)) {
          this.#head++
          continue
        }
        if (hooks.expiresAt(head) > now) {
          // Node's timer clock is whole milliseconds: re-read before waiting again.
          now = Math.max(performance.now(), now)
          if (hooks.expiresAt(head) > now) break
        }
        hooks.fire(head) // removes it, which advances the head
        if (this.#items[this.#head] === head && hooks.queued(head, this)) {
          // A fire hook that did not take its item out: drop it here rather than loop on it.
          this.#head++
          this.#live--
        }
      }
    } finally {
      this.#firing = false
      this.#rearm()
    }
  }

  #rearm(): void {
    const head = this.#items[this.#head]
    if (this.#live === 0 || head === undefined) {
      this.#drop()
      return
    }
    const due = this.#hooks.expiresAt(head)
    this.#timer = this.#setTimeout(this.#onTimer, nextTimerDelay(due, this.#armedFor))
    this.#refed = true
    this.#armedFor = due
  }
}

/**
 * Timers for many items (deadlines, attempt budgets) at a few words each: one
 * {@link TimerQueue} (and one Node timer) per whole-millisecond delay. An item is
 * due `delay` ms after it was added; when its queue's timer fires, `hooks.fire`
 * expires it. Queues of delays no longer used disappear by themselves. A test
 * that installs fake timers gets queues on the fake clock from then on.
 *
 * @example
 * ```ts
 * const queues = new TimerQueues<Job>(hooks)
 * job.dueAt = performance.now() + 800
 * job.queue = queues.add(800, job)
 * ```
 */
export class TimerQueues<T> {
  readonly #all = new Map<number, TimerQueue<T>>()
  readonly #hooks: QueueHooks<T>

  constructor(hooks: QueueHooks<T>) {
    this.#hooks = hooks
  }

  /** Queues `item`, due `delay` ms from now (a whole number >= 1); returns its queue, for `removed()`. */
  add(delay: number, item: T): TimerQueue<T> {
    return TimerQueue.add(this.#all, this.#hooks, delay, item)
  }
}
