/**
 * Items following outside signals (a caller's `init.signal`, a shutdown signal),
 * behind one `abort` listener per signal whatever the number of items: a signal
 * shared by many calls in flight gets one listener, never a
 * `MaxListenersExceededWarning`, and none once its last item leaves. The signal
 * holds its items only while they are linked; the links hold no signal strongly.
 *
 * @example
 * ```ts
 * const links = new AbortLinks<Job>((job, signal) => job.abort(signal.reason))
 * links.add(init.signal, job) // when the job starts (the signal not yet aborted)
 * links.delete(init.signal, job) // when it ends first
 * ```
 */
export class AbortLinks<T> {
  readonly #links = new WeakMap<AbortSignal, Set<T>>()
  readonly #aborted: (item: T, signal: AbortSignal) => void

  /** `aborted` is told once per item still linked when its signal aborts (the item is unlinked first). */
  constructor(aborted: (item: T, signal: AbortSignal) => void) {
    this.#aborted = aborted
  }

  /** Links `item` to `signal`, which must not have aborted yet. */
  add(signal: AbortSignal, item: T): void {
    let linked = this.#links.get(signal)
    if (linked === undefined) {
      linked = new Set()
      this.#links.set(signal, linked)
      signal.addEventListener('abort', this.#onAbort, { once: true })
    }
    linked.add(item)
  }

  /** Unlinks `item` from `signal`; the listener goes with the signal's last item. */
  delete(signal: AbortSignal, item: T): void {
    const linked = this.#links.get(signal)
    if (linked?.delete(item) && linked.size === 0) {
      this.#links.delete(signal)
      signal.removeEventListener('abort', this.#onAbort)
    }
  }

  readonly #onAbort = (event: Event): void => {
    const signal = event.target as AbortSignal
    const linked = this.#links.get(signal)
    if (linked === undefined) return
    // The items linked when it aborted, less those an earlier one's callback unlinked.
    for (const item of [...linked]) {
      if (linked.delete(item)) this.#aborted(item, signal)
    }
    this.#links.delete(signal)
  }
}
