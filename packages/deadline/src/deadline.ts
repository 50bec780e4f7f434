import { AsyncLocalStorage } from 'node:async_hooks'
import { setMaxListeners } from 'node:events'
import { AbortLinks, describeValue, listenerArgument, MAX_TIMER_DELAY, objectOption, type TimerQueue, TimerQueues } from '@ballast/core'
import { ClientClosedError, DeadlineCancelledError, DeadlineExceededError } from './errors.js'

// One store per process, shared by every copy of this package an application
// ends up with, so a deadline set by one copy is `current()` for the others.
const storageKey = Symbol.for('ballast.deadline.storage')
const holder = globalThis as { [storageKey]?: AsyncLocalStorage<Deadline> }
holder[storageKey] ??= new AsyncLocalStorage<Deadline>()
const storage: AsyncLocalStorage<Deadline> = holder[storageKey]

/**
 * Options of {@link Deadline.after} and {@link Deadline.child}.
 *
 * @example
 * ```ts
 * using job = Deadline.after(30_000, { signal: shutdown.signal }) // aborts at 30 s or on shutdown
 * using call = Deadline.after(budgetMs, { inherited: true }) // the caller's budget: expiry reported as 'inherited'
 * ```
 */
export interface DeadlineOptions {
  /**
   * The budget comes from the caller (an inbound header), so its expiry is
   * reported with `source: 'inherited'` instead of `local`. Default `false`.
   */
  inherited?: boolean | undefined
  /**
   * An outside signal (a shutdown signal, a job's signal) this deadline is
   * linked to: when it aborts, so does the deadline, with the signal's reason as
   * `cause`. However many deadlines link to one signal, it carries a single
   * listener of ours, removed when the last of them is disposed. A child
   * given one follows both its parent and the signal, whichever aborts first.
   */
  signal?: AbortSignal | undefined
}

function checkOptions(owner: string, options: unknown, known: readonly string[]): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${owner}: "options" must be an object, got ${describeValue(options)}`)
  }
  // A misspelt `signal` would drop the link silently. A loop, not Object.keys: this runs for
  // every request deadline, and the usual options object has no key or one.
  for (const key in options) {
    if (!known.includes(key)) objectOption(owner, 'options', options, known)
  }
  const { inherited, signal } = options as DeadlineOptions
  if (inherited !== undefined && typeof inherited !== 'boolean') {
    throw new TypeError(`${owner}: option "inherited" must be a boolean, got ${describeValue(inherited)}`)
  }
  if (signal !== undefined && !isAbortSignal(signal)) {
    throw new TypeError(`${owner}: option "signal" must be an AbortSignal, got ${describeValue(signal)}`)
  }
}
const DEADLINE_OPTIONS: readonly string[] = ['inherited', 'signal']
const WITH_DEADLINE_OPTIONS: readonly string[] = ['signal']

// By shape, so that a signal of another realm or a conforming polyfill links too.
const isAbortSignal = (value: unknown): value is AbortSignal =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as AbortSignal).aborted === 'boolean' &&
  typeof (value as AbortSignal).addEventListener === 'function' &&
  typeof (value as AbortSignal).removeEventListener === 'function'

function checkMs(owner: string, ms: unknown): number {
  if (typeof ms !== 'number' || Number.isNaN(ms)) {
    throw new TypeError(`${owner}: "ms" must be a number of milliseconds, got ${describeValue(ms)}`)
  }
  return ms
}

/**
 * The reason a deadline gets when its parent, or the outside signal it follows,
 * aborts with `reason`: same kind, that reason as `cause`.
 */
function inheritedReason(reason: unknown, timeout: number, from: 'parent' | 'signal'): unknown {
  if (reason instanceof DeadlineExceededError) return new DeadlineExceededError(undefined, { source: 'parent', cause: reason, timeout })
  if (reason instanceof ClientClosedError) return new ClientClosedError(undefined, { cause: reason })
  if (reason instanceof DeadlineCancelledError && reason.disposed) {
    return new DeadlineCancelledError('the parent deadline was disposed', { cause: reason, disposed: true })
  }
  const message = from === 'parent' ? 'the parent deadline was cancelled' : 'the signal the deadline follows was aborted'
  return new DeadlineCancelledError(message, { cause: reason })
}

/** Told once when a deadline aborts: the middleware's per-request state is one, so it needs no closure. */
export interface AbortWatcher {
  deadlineAborted(reason: unknown): void
  /**
   * Called just before the signal's own `abort` listeners run (when the deadline has
   * a signal), which run before the watchers are told: a watcher that must know what
   * those listeners did (the middleware: did they end the response?) looks first.
   */
  deadlineAborting?(): void
}

// A pending race's reject, or an object told of the abort (an `onAbort` subscription, the middleware's request state).
type Waiter = ((reason: unknown) => void) | AbortWatcher
type Work<T> = PromiseLike<T> | ((signal: AbortSignal) => PromiseLike<T>)
function ignore(): void {}
const unsubscribed: Disposable = { [Symbol.dispose]: ignore }

/** Calls an `onAbort` listener; what it throws is reported as uncaught, as EventTarget does, never to the aborting code. */
function callListener(listener: (reason: unknown) => void, reason: unknown): void {
  try {
    listener(reason)
  } catch (error) {
    process.nextTick(() => {
      throw error
    })
  }
}

function notify(waiter: Waiter, reason: unknown): void {
  if (typeof waiter === 'function') waiter(reason)
  else waiter.deadlineAborted(reason)
}

// Set in a static block of Deadline: an AbortSubscription's dispose reaches the deadline's waiters.
let unsubscribe: (deadline: Deadline, subscription: AbortSubscription) => void

/** What {@link Deadline.onAbort} returns: one object per subscription, no closure. */
class AbortSubscription implements Disposable, AbortWatcher {
  readonly #listener: (reason: unknown) => void
  #deadline: Deadline | undefined

  constructor(deadline: Deadline, listener: (reason: unknown) => void) {
    this.#deadline = deadline
    this.#listener = listener
  }

  deadlineAborted(reason: unknown): void {
    callListener(this.#listener, reason)
  }

  [Symbol.dispose](): void {
    const deadline = this.#deadline
    if (deadline === undefined) return
    this.#deadline = undefined
    unsubscribe(deadline, this)
  }
}
// Set in a static block of Deadline: whether a deadline is of this copy's class.
let isOwn: (deadline: Deadline) => boolean
// Set in a static block of Deadline: `withDeadline` races and disposes in one step.
let raceAndDispose: <T>(deadline: Deadline, work: Work<T>) => Promise<T>

/** Disposes `deadline` once `settled` settles, which settles the same way. */
function settleAndDispose<T>(deadline: Deadline, settled: Promise<T>): Promise<T> {
  return settled.finally(() => deadline[Symbol.dispose]())
}
let watchAbort: (deadline: Deadline, watcher: AbortWatcher) => void
let unwatchAbort: (deadline: Deadline, watcher: AbortWatcher) => void

/**
 * Tells `watcher` once when `deadline` aborts (at once if it already has),
 * without creating its signal, an event listener or a subscription object: the
 * middleware watches every request's deadline this way. Internal to the package.
 */
export function onDeadlineAbort(deadline: Deadline, watcher: AbortWatcher): void {
  watchAbort(deadline, watcher)
}

/**
 * Stops telling `watcher` about `deadline`. The middleware calls it when a
 * response closes: a disposed deadline may stay referenced longer (by user
 * code, by the async context of work the request started, by a timer queue that
 * drops entries lazily), and must not keep the request's objects alive with it.
 * Internal to the package.
 */
export function offDeadlineAbort(deadline: Deadline, watcher: AbortWatcher): void {
  unwatchAbort(deadline, watcher)
}

// Deadlines linked to an outside signal, fanned out from a single listener per signal;
// made in a static block of Deadline (it aborts through private fields).
let externalLinks: AbortLinks<Deadline>
// The timers of all deadlines, one queue (and one Node timer) per whole-millisecond
// delay; made in a static block of Deadline (its hooks read private fields).
let timerQueues: TimerQueues<Deadline>

/**
 * A point in time after which work should stop, like Go's `context.WithTimeout`.
 *
 * Deadlines form a tree: {@link Deadline.child} is never later than its parent,
 * and aborting a parent aborts its children. `signal` aborts at expiry (reason:
 * {@link DeadlineExceededError}), on {@link Deadline.cancel}, or when the parent
 * aborts. Time is measured on the monotonic clock, so wall-clock jumps change
 * nothing. Each deadline owns at most one timer, cleared when it aborts or is
 * disposed; a delay above 2^31-1 ms arms no timer; a budget `<= 0` is expired at
 * once. No error object is built unless the deadline actually aborts.
 *
 * `run()` makes a deadline {@link Deadline.current} for a function and
 * everything it awaits.
 *
 * @example
 * ```ts
 * using deadline = Deadline.after(2_000)
 * await deadline.run(async () => {
 *   const user = await withDeadline(300, (signal) => db.query(sql, { signal })) // child: <= 300 ms and <= the 2 s
 *   return fetch(url, { signal: Deadline.current()?.signal ?? null })
 * })
 * ```
 */
export class Deadline implements Disposable {
  readonly #expiresAt: number
  readonly #timeout: number
  readonly #inherited: boolean
  // The parent whose end this child keeps, so that its expiry is reported as the parent's: a
  // disposed parent at the child's creation (the child times that end itself), or the parent
  // a child was linked to when the child was disposed (its `reason` may be read later).
  #endOf: Deadline | undefined
  #controller: AbortController | undefined
  #aborted = false
  #reason: unknown
  #queue: TimerQueue<Deadline> | undefined
  #parent: Deadline | undefined
  #external: AbortSignal | undefined
  // Linked children: one slot for the usual single child (a route deadline, a withDeadline call), a set beyond.
  #child: Deadline | undefined
  #children: Set<Deadline> | undefined
  #disposed = false
  // Pending races, rejected on abort: one slot for the usual single race, a set beyond.
  #waiter: Waiter | undefined
  #waiters: Set<Waiter> | undefined

  // `delay` is the budget from the instant `expiresAt` was computed, or `undefined`
  // for a child whose parent ends first and fires for it.
  private constructor(
    expiresAt: number,
    timeout: number,
    inherited: boolean,
    delay: number | undefined,
    endOf: Deadline | undefined = undefined,
  ) {
    this.#expiresAt = expiresAt
    this.#timeout = timeout
    this.#inherited = inherited
    this.#endOf = endOf
    if (delay === undefined) return
    if (delay <= 0) this.#expire()
    // Whole milliseconds: deadlines of one delay share a queue and its one Node
    // timer (see TimerQueue); rounding up never fires early, and `expired` reads
    // the clock for the sub-millisecond rest.
    else if (delay <= MAX_TIMER_DELAY) this.#queue = timerQueues.add(Math.ceil(delay), this)
  }

  /**
   * A root deadline `ms` milliseconds from now. `ms <= 0` is already expired;
   * above 2^31-1 (or `Infinity`) no timer is armed.
   *
   * @example
   * ```ts
   * using deadline = Deadline.after(500)
   * const response = await fetch(url, { signal: deadline.signal })
   * ```
   */
  static after(ms: number, options: DeadlineOptions = {}): Deadline {
    checkMs('Deadline.after', ms)
    checkOptions('Deadline.after', options, DEADLINE_OPTIONS)
    const deadline = new Deadline(performance.now() + ms, ms, options.inherited === true, ms)
    const signal = options.signal
    if (signal !== undefined && !deadline.#aborted) deadline.#linkExternal(signal)
    return deadline
  }

  /**
   * The deadline in effect for the running code (set by {@link Deadline.run},
   * {@link withDeadline} or the `deadline()` middleware), shared by every copy of
   * this package in the process.
   *
   * @example
   * ```ts
   * const budget = Deadline.current()?.remaining() ?? Number.POSITIVE_INFINITY
   * ```
   */
  static current(): Deadline | undefined {
    return storage.getStore()
  }

  /**
   * Aborts at expiry with a {@link DeadlineExceededError}, on `cancel(reason)`
   * with that reason, and when the parent aborts (the parent's reason is the
   * `cause` of this one's). Created on first access.
   *
   * @example
   * ```ts
   * await fetch(url, { signal: deadline.signal })
   * ```
   */
  get signal(): AbortSignal {
    if (!this.#aborted) this.#checkClock()
    return this.#signal()
  }

  #signal(): AbortSignal {
    let controller = this.#controller
    if (controller === undefined) {
      controller = new AbortController()
      // Concurrent races and fetches on one request deadline each listen for a while;
      // they remove their listener when they settle, so many of them is not a leak.
      setMaxListeners(0, controller.signal)
      this.#controller = controller
      if (this.#aborted) controller.abort(this.#reason)
    }
    return controller.signal
  }

  /**
   * Milliseconds left, `>= 0`, on the monotonic clock; `0` once aborted; never
   * increases on one clock (a fake `performance` installed after the deadline was
   * made is another clock). `Infinity` for `Deadline.after(Infinity)`.
   *
   * @example
   * ```ts
   * if (deadline.remaining() < 50) return cachedAnswer()
   * ```
   */
  remaining(): number {
    if (this.#aborted) return 0
    const left = this.#expiresAt - performance.now()
    return Math.max(left, 0)
  }

  /**
   * True once the deadline is over: its time is up, or it was cancelled, or its
   * parent aborted. Reading it after the time is up aborts the signal right away
   * even if the timer has not run yet (a busy event loop).
   *
   * @example
   * ```ts
   * for (const row of rows) { if (deadline.expired) break; await handle(row) }
   * ```
   */
  get expired(): boolean {
    if (this.#aborted) return true
    this.#checkClock()
    // A disposed deadline aborts no more, but its time still runs out.
    return this.#aborted || (this.#disposed && performance.now() >= this.#expiresAt)
  }

  /**
   * Why the deadline is over, `undefined` while it runs: the signal's abort
   * reason, or, once the time of a disposed deadline is up, a
   * {@link DeadlineExceededError} (a disposed deadline's signal aborts no more,
   * so `signal.reason` stays `undefined` there). Like Go's `ctx.Err()`, and
   * like the signal it reads the clock first.
   *
   * @example
   * ```ts
   * if (deadline.expired) throw deadline.reason
   * ```
   */
  get reason(): unknown {
    if (!this.expired) return undefined
    // A disposed deadline past its end: built once, kept where an abort would keep it.
    if (!this.#aborted) this.#reason ??= this.#expiryReason()
    return this.#reason
  }

  /**
   * The budget this deadline was created with, in ms (for a child: the `ms`
   * passed to `child`, even when the parent's end came first).
   */
  get timeout(): number {
    return this.#timeout
  }

  /**
   * A deadline ending at `min(parent's end, now + ms)`, aborted when this one
   * aborts (or when `options.signal` does). When the parent's end comes first the
   * child arms no timer of its own. A child of a disposed deadline is not linked
   * to it any more.
   *
   * @example
   * ```ts
   * using lookup = request.child(300)
   * await cache.get(key, { signal: lookup.signal })
   * // Also ended by the process's shutdown signal, whichever comes first:
   * using report = request.child(5_000, { signal: shutdown.signal })
   * ```
   */
  child(ms: number, options: DeadlineOptions = {}): Deadline {
    checkMs('Deadline.child', ms)
    checkOptions('Deadline.child', options, DEADLINE_OPTIONS)
    const now = performance.now()
    const end = now + ms
    const linked = !this.#disposed && !this.#aborted
    // A linked child whose parent ends first arms no timer: the parent fires for
    // it. A disposed parent fires for nobody, so its child times the parent's end itself.
    const expiresAt = Math.min(end, this.#expiresAt)
    // An aborted parent gives its reason below: no expiry of the child's own may come first.
    const delay = this.#aborted ? undefined : end < this.#expiresAt ? ms : linked ? undefined : this.#expiresAt - now
    const endOf = end < this.#expiresAt || linked ? undefined : this
    const child = new Deadline(expiresAt, ms, options.inherited === true, delay, endOf)
    if (this.#aborted) child.#abort(inheritedReason(this.#reason, ms, 'parent'))
    else if (linked && !child.#aborted) {
      child.#parent = this
      if (this.#child === undefined) this.#child = child
      else {
        this.#children ??= new Set()
        this.#children.add(child)
      }
    }
    const signal = options.signal
    if (signal !== undefined && !child.#aborted) child.#linkExternal(signal)
    return child
  }

  /**
   * Aborts the signal (and every child's) with `reason`, default a
   * {@link DeadlineCancelledError}. No-op once aborted.
   *
   * @example
   * ```ts
   * deadline.cancel(new Error('user pressed stop'))
   * ```
   */
  cancel(reason?: unknown): void {
    // Over already (its time up, disposed or not): its reason stays what it was, as Go's ctx.Err().
    if (this.expired) return
    this.#abort(reason === undefined ? new DeadlineCancelledError() : reason)
  }

  /**
   * Calls `listener` once with the abort reason when this deadline aborts (at
   * once if it already has), until the returned Disposable is disposed. Unlike
   * an `abort` listener on {@link Deadline.signal}, it creates no AbortController
   * and no event listener: a few words per subscription, for code that links
   * every call to the caller's deadline (breakers, clients). Like the signal, it
   * does not read the clock: check {@link Deadline.expired} first. Listeners are
   * called after the signal's `abort` listeners. A listener that throws is
   * reported as an uncaught exception, as EventTarget does.
   *
   * @example
   * ```ts
   * using _link = deadline.onAbort((reason) => attempt.abort(reason))
   * return await attempt.run()
   * ```
   */
  onAbort(listener: (reason: unknown) => void): Disposable {
    listenerArgument('Deadline.onAbort', listener)
    if (this.#aborted) {
      callListener(listener, this.#reason)
      return unsubscribed
    }
    const subscription = new AbortSubscription(this, listener)
    this.#addWaiter(subscription)
    return subscription
  }

  /**
   * Runs `fn` with this deadline as {@link Deadline.current}, for `fn` and
   * everything it awaits.
   *
   * @example
   * ```ts
   * await deadline.run(() => service.placeOrder(order)) // the service sees Deadline.current()
   * ```
   */
  run<T>(fn: () => T): T {
    return storage.run(this, fn)
  }

  /**
   * Settles like `work`, or rejects with the signal's reason as soon as the
   * deadline aborts. A function receives the signal, runs with this deadline as
   * current, and is not called at all when the deadline is already over. The
   * race adds no timer, no abort listener and no error object: the deadline's
   * own timer ends it.
   *
   * @example
   * ```ts
   * const rows = await deadline.race((signal) => db.query(sql, { signal }))
   * ```
   */
  race<T>(work: PromiseLike<T> | ((signal: AbortSignal) => PromiseLike<T>)): Promise<T> {
    return this.#race(work, false)
  }

  #race<T>(work: PromiseLike<T> | ((signal: AbortSignal) => PromiseLike<T>), dispose: boolean): Promise<T> {
    let promise: PromiseLike<T>
    if (typeof work === 'function') {
      // withDeadline's deadline was created a moment ago: no need to read the clock again.
      if (!dispose && !this.#aborted) this.#checkClock()
      const signal = this.#signal()
      if (this.#aborted) {
        if (dispose) this[Symbol.dispose]()
        return Promise.reject(this.#reason)
      }
      try {
        promise = storage.run(this, work, signal)
      } catch (error) {
        if (dispose) this[Symbol.dispose]()
        return Promise.reject(error)
      }
    } else {
      promise = work as PromiseLike<T>
      if (!this.#aborted) this.#checkClock()
    }
    // A native promise stays as it is; a thenable is adopted, so that a `then` that throws rejects instead of escaping.
    promise = Promise.resolve(promise)
    return new Promise<T>((resolve, reject) => {
      if (this.#aborted) {
        // Observe the loser so its rejection is never reported as unhandled.
        promise.then(undefined, ignore)
        if (dispose) this[Symbol.dispose]()
        reject(this.#reason)
        return
      }
      this.#addWaiter(reject)
      promise.then(
        (value) => {
          this.#removeWaiter(reject)
          if (dispose) this[Symbol.dispose]()
          resolve(value)
        },
        (error: unknown) => {
          this.#removeWaiter(reject)
          if (dispose) this[Symbol.dispose]()
          reject(error)
        },
      )
    })
  }

  static {
    unsubscribe = (deadline, subscription) => deadline.#removeWaiter(subscription)
    externalLinks = new AbortLinks<Deadline>((deadline, signal) => {
      deadline.#external = undefined
      deadline.#abort(inheritedReason(signal.reason, deadline.#timeout, 'signal'))
    })
    timerQueues = new TimerQueues<Deadline>({
      expiresAt: (deadline) => deadline.#expiresAt,
      queued: (deadline, queue) => deadline.#queue === queue,
      fire: (deadline) => deadline.#expire(),
    })
    isOwn = (deadline) => #race in deadline
    raceAndDispose = (deadline, work) =>
      // A child of a deadline from another copy of this package is of that copy's class: its public race will do.
      #race in deadline ? deadline.#race(work, true) : settleAndDispose(deadline, (deadline as Deadline).race(work))
    watchAbort = (deadline, watcher) => {
      if (!(#waiter in deadline)) {
        // A deadline from another copy of this package: its public signal will do.
        const signal = (deadline as Deadline).signal
        if (signal.aborted) watcher.deadlineAborted(signal.reason)
        else signal.addEventListener('abort', () => watcher.deadlineAborted(signal.reason), { once: true })
      } else if (deadline.#aborted) watcher.deadlineAborted(deadline.#reason)
      else deadline.#addWaiter(watcher)
    }
    unwatchAbort = (deadline, watcher) => {
      if (#waiter in deadline) deadline.#removeWaiter(watcher)
    }
  }

  #addWaiter(waiter: Waiter): void {
    if (this.#waiter === undefined) this.#waiter = waiter
    else {
      this.#waiters ??= new Set()
      this.#waiters.add(waiter)
    }
  }

  #removeWaiter(waiter: Waiter): void {
    if (this.#waiter === waiter) this.#waiter = undefined
    else this.#waiters?.delete(waiter)
  }

  /**
   * Clears the timer and the link to the parent (or outside signal). It does not
   * abort this signal (nothing is built on the happy path); children still linked
   * are cancelled with a {@link DeadlineCancelledError}, as Go cancels a
   * context's children with it.
   *
   * @example
   * ```ts
   * { using deadline = Deadline.after(100); await work(deadline.signal) } // disposed here
   * ```
   */
  [Symbol.dispose](): void {
    if (this.#disposed) return
    this.#disposed = true
    const queue = this.#queue
    if (queue !== undefined) {
      this.#queue = undefined
      queue.removed()
    }
    const parent = this.#parent
    if (parent !== undefined && parent.#expiresAt <= this.#expiresAt) this.#endOf = parent
    this.#unlink()
    if (this.#child === undefined && (this.#children === undefined || this.#children.size === 0)) return
    this.#abortChildren(new DeadlineCancelledError('the parent deadline was disposed', { disposed: true }), false)
  }

  /**
   * Unlinks every child and aborts it with `reason`, or with a reason of the
   * same kind that has `reason` as cause when `inherit` (no closure: a function
   * holding one makes V8 allocate a context on every call of its caller).
   */
  #abortChildren(reason: unknown, inherit: boolean): void {
    const first = this.#child
    const rest = this.#children
    this.#child = undefined
    this.#children = undefined
    if (first !== undefined) {
      first.#parent = undefined
      first.#abort(inherit ? inheritedReason(reason, first.#timeout, 'parent') : reason)
    }
    if (rest === undefined) return
    for (const child of rest) {
      child.#parent = undefined
      child.#abort(inherit ? inheritedReason(reason, child.#timeout, 'parent') : reason)
    }
  }

  #checkClock(): void {
    if (!this.#disposed && performance.now() >= this.#expiresAt) {
      if (this.#parent !== undefined && this.#parent.#expiresAt <= this.#expiresAt) this.#parent.#checkClock()
      else this.#expire()
    }
  }

  #expire(): void {
    this.#abort(this.#expiryReason())
  }

  /** Why this deadline expires at its end: its own budget, or the end of the disposed parent it kept. */
  #expiryReason(): DeadlineExceededError {
    const endOf = this.#endOf
    if (endOf !== undefined) {
      return new DeadlineExceededError(undefined, { source: 'parent', timeout: this.#timeout, cause: endOf.#expiryReason() })
    }
    return new DeadlineExceededError(undefined, { source: this.#inherited ? 'inherited' : 'local', timeout: this.#timeout })
  }

  #linkExternal(signal: AbortSignal): void {
    if (signal.aborted) {
      this.#abort(inheritedReason(signal.reason, this.#timeout, 'signal'))
      return
    }
    externalLinks.add(signal, this)
    this.#external = signal
  }

  #unlink(): void {
    const parent = this.#parent
    if (parent !== undefined) {
      this.#parent = undefined
      if (parent.#child === this) parent.#child = undefined
      else parent.#children?.delete(this)
    }
    const external = this.#external
    if (external !== undefined) {
      this.#external = undefined
      externalLinks.delete(external, this)
    }
  }

  #beforeSignalListeners(): void {
    const waiter = this.#waiter
    if (typeof waiter === 'object') waiter.deadlineAborting?.()
    const waiters = this.#waiters
    if (waiters !== undefined) {
      for (const each of waiters) if (typeof each === 'object') each.deadlineAborting?.()
    }
  }

  #abort(reason: unknown): void {
    if (this.#aborted) return
    this.#aborted = true
    this.#reason = reason
    const queue = this.#queue
    if (queue !== undefined) {
      this.#queue = undefined
      queue.removed()
    }
    this.#unlink()
    const controller = this.#controller
    if (controller !== undefined) {
      this.#beforeSignalListeners()
      controller.abort(reason)
    }
    const waiter = this.#waiter
    if (waiter !== undefined) {
      this.#waiter = undefined
      notify(waiter, reason)
    }
    const waiters = this.#waiters
    if (waiters !== undefined) {
      // Iterated live: a waiter disposed by an earlier one's listener is not told.
      for (const each of waiters) {
        waiters.delete(each)
        notify(each, reason)
      }
      this.#waiters = undefined
    }
    if (this.#child !== undefined || this.#children !== undefined) {
      this.#abortChildren(reason, true)
    }
  }
}

/**
 * Runs `work` under a deadline `ms` from now: a child of {@link Deadline.current}
 * (so never later than the enclosing one) or a root. `work` gets the signal and
 * runs with the new deadline as current; the result settles like `work`, or
 * rejects with the signal's reason (a {@link DeadlineExceededError} at expiry)
 * as soon as the deadline aborts. The deadline is disposed when it settles.
 * `options.signal` (a job's or a shutdown's) aborts it too.
 *
 * @example
 * ```ts
 * const stock = await withDeadline(300, (signal) => fetch(`${INVENTORY}/stock/42`, { signal }).then((r) => r.json()))
 * // Also stopped by the job's own signal:
 * await withDeadline(5_000, (signal) => sendReport(job.data, signal), { signal: job.signal })
 * ```
 */
export function withDeadline<T>(
  ms: number,
  work: (signal: AbortSignal) => PromiseLike<T>,
  options?: Pick<DeadlineOptions, 'signal'>,
): Promise<T> {
  if (typeof work !== 'function') throw new TypeError(`withDeadline: "work" must be a function, got ${describeValue(work)}`)
  if (options !== undefined) checkOptions('withDeadline', options, WITH_DEADLINE_OPTIONS)
  const current = storage.getStore()
  const signal = options?.signal
  if (signal === undefined) return raceAndDispose(current === undefined ? Deadline.after(ms) : current.child(ms), work)
  if (current === undefined) return raceAndDispose(Deadline.after(ms, { signal }), work)
  if (isOwn(current)) return raceAndDispose(current.child(ms, { signal }), work)
  // A deadline of another copy of this package, whose child() may not take a signal: the signal
  // cancels the child, through a listener of its own (a rare path: one per call, removed at settle).
  const child = current.child(ms)
  const cancel = () => child.cancel(inheritedReason(signal.reason, ms, 'signal'))
  if (signal.aborted) cancel()
  else signal.addEventListener('abort', cancel, { once: true })
  return raceAndDispose(child, work).finally(() => signal.removeEventListener('abort', cancel))
}

/**
 * Runs `fn` outside any deadline: {@link Deadline.current} is `undefined` in
 * `fn` and in everything it awaits or starts, while every other
 * AsyncLocalStorage (logging, tracing) keeps its value. Like Go's
 * `context.WithoutCancel`: for work that must outlive the request that starts
 * it (a background loop, a cache refresh, a pool's connection factory, work
 * shared by several requests), which would otherwise keep that request's
 * deadline as current after the response, and be cut off by it.
 *
 * @example
 * ```ts
 * // One refresh shared by every caller, bounded by its own budget; each caller bounds only its wait.
 * refresh ??= withoutDeadline(() => withDeadline(2_000, loadPrices)).finally(() => {
 *   refresh = undefined
 * })
 * const prices = await (Deadline.current()?.race(refresh) ?? refresh)
 * ```
 */
export function withoutDeadline<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new TypeError(`withoutDeadline: "fn" must be a function, got ${describeValue(fn)}`)
  return storage.exit(fn)
}
