import { setImmediate } from 'node:timers'
import { AbortLinks, type Linked, type LiveList, ranOnBusyLoop, type TimerQueue, TimerQueues, timerDelay } from '@ballast/core'
import type { Deadline } from '@ballast/deadline'

/** What ended an attempt early. */
export type AbortSource = 'timer' | 'deadline' | 'caller' | 'breaker' | 'disposed'

/** Builds the reason of an attempt that ran out of budget; one per client, not per attempt. */
export type TimeoutReason = (budget: number, deadlineBound: boolean, deadline: Deadline | undefined) => unknown

// Attempt budgets on shared timers (one per whole-millisecond budget), made in a
// static block of AttemptScope (the hooks read private fields).
let budgetTimers: TimerQueues<AttemptScope>
// The attempts following each caller's signal, behind one listener per signal: a signal
// shared by many calls (a shutdown signal) gets one listener, not one per attempt in
// flight. Made in a static block of AttemptScope (it aborts through private fields).
let callerLinks: AbortLinks<AttemptScope>
// Times out a scope whose timer ran late, after the sockets were read (made in the static block).
let expireLate: (scope: AttemptScope) => void

/**
 * The lifetime of one attempt: its own AbortController, its budget timer and its
 * links to the caller's deadline and the caller's `init.signal`. It outlives the
 * response headers on purpose: the timer and the links are released only when
 * the body has been read (or cancelled) or the attempt aborts, so a slow body is
 * cut at the same budget as slow headers. Every release is idempotent; nothing is
 * left behind after it.
 *
 * The deadline is watched through `Deadline.onAbort` (no AbortController on the
 * deadline, no event listener); an outside `init.signal` gets one listener for all
 * the attempts following it.
 * Until released, a scope sits in its client's `LiveList` (two links, no
 * closure, no hashing), so disposing the client can abort it.
 */
export class AttemptScope implements Linked<AttemptScope> {
  readonly #controller = new AbortController()
  readonly #budget: number
  readonly #deadlineBound: boolean
  readonly #deadline: Deadline | undefined
  readonly #timeoutReason: TimeoutReason
  readonly #live: LiveList<AttemptScope>
  // Links of the client's list of live scopes.
  prev: AttemptScope | undefined = undefined
  next: AttemptScope | undefined = undefined
  readonly #expiresAt: number
  #timer: TimerQueue<AttemptScope> | undefined
  #source: AbortSource | undefined
  #released = false
  #deadlineLink: Disposable | undefined = undefined
  #callerSignal: AbortSignal | undefined = undefined

  constructor(
    budget: number,
    deadlineBound: boolean,
    deadline: Deadline | undefined,
    timeoutReason: TimeoutReason,
    live: LiveList<AttemptScope>,
  ) {
    this.#budget = budget
    this.#deadlineBound = deadlineBound
    this.#deadline = deadline
    this.#timeoutReason = timeoutReason
    this.#expiresAt = performance.now() + budget
    const delay = timerDelay(budget)
    // Whole milliseconds, rounded up: never early; one shared timer per distinct budget.
    this.#timer = delay === undefined ? undefined : budgetTimers.add(Math.max(1, Math.ceil(delay)), this)
    this.#live = live
    live.add(this)
  }

  static {
    expireLate = (scope) => scope.#expire()
    callerLinks = new AbortLinks<AttemptScope>((scope, signal) => {
      scope.#callerSignal = undefined
      scope.#abort('caller', signal.reason)
    })
    budgetTimers = new TimerQueues<AttemptScope>({
      expiresAt: (scope) => scope.#expiresAt,
      queued: (scope, queue) => scope.#timer === queue,
      fire: (scope) => scope.timedOut(),
    })
  }

  /** The signal handed to fetch. */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** Whether the caller's deadline, not the client's `timeout`, set this attempt's budget. */
  get deadlineBound(): boolean {
    return this.#deadlineBound
  }

  /** What aborted the attempt, if anything did. */
  get source(): AbortSource | undefined {
    return this.#source
  }

  /** Milliseconds left of the attempt budget. */
  remaining(): number {
    return Math.max(0, this.#expiresAt - performance.now())
  }

  /** Aborts this attempt when the caller's deadline aborts, with its reason. */
  linkDeadline(): void {
    const deadline = this.#deadline
    if (deadline === undefined || this.#released) return
    if (deadline.expired) {
      this.#abort('deadline', deadline.reason)
      return
    }
    this.#deadlineLink = deadline.onAbort((reason) => this.#abort('deadline', reason))
  }

  /** Aborts this attempt when the caller's own `signal` aborts, with its reason. */
  linkCaller(signal: AbortSignal | undefined): void {
    if (signal === undefined || this.#released) return
    if (signal.aborted) {
      this.#abort('caller', signal.reason)
      return
    }
    callerLinks.add(signal, this)
    this.#callerSignal = signal
  }

  timedOut(): void {
    const timer = this.#timer
    this.#timer = undefined
    timer?.removed()
    if (this.#released) return
    if (ranOnBusyLoop(this.#expiresAt, performance.now())) {
      // Answers that came in meanwhile are read first (setImmediate of node:timers, never a fake one).
      setImmediate(expireLate, this)
      return
    }
    this.#expire()
  }

  #expire(): void {
    if (!this.#released) this.#abort('timer', this.#timeoutReason(this.#budget, this.#deadlineBound, this.#deadline))
  }

  /** Aborts the attempt because its client is disposed (its request and body read end now). */
  dispose(reason: unknown): void {
    this.#abort('disposed', reason)
  }

  /** Clears the timer and every link, and leaves the client's live set. The signal stays as it is. */
  release(): void {
    if (this.#released) return
    this.#released = true
    this.#live.remove(this)
    const timer = this.#timer
    if (timer !== undefined) {
      this.#timer = undefined
      timer.removed()
    }
    const link = this.#deadlineLink
    if (link !== undefined) {
      this.#deadlineLink = undefined
      link[Symbol.dispose]()
    }
    const signal = this.#callerSignal
    if (signal !== undefined) {
      this.#callerSignal = undefined
      callerLinks.delete(signal, this)
    }
  }

  #abort(source: AbortSource, reason: unknown): void {
    if (this.#source !== undefined) return
    this.#source = source
    this.release()
    this.#controller.abort(reason)
  }
}
