import { listenerArgument } from '@ballast/core'

/**
 * A listener of a breaker event. The `onX(listener)` method that takes it returns
 * a `Disposable`: dispose it (or use `using`) to unsubscribe.
 *
 * @example
 * ```ts
 * const logChange: Listener<StateChangeEvent> = ({ from, to }) => log.warn(`inventory breaker: ${from} -> ${to}`)
 * using subscription = breaker.onStateChange(logChange)
 * ```
 */
export type Listener<T> = (event: T) => void

/**
 * A typed, synchronous event. A throwing listener cannot corrupt the emitter's
 * bookkeeping: its error is rethrown on a microtask, where it surfaces as an
 * uncaught exception exactly as an `EventEmitter` listener's would.
 *
 * @example
 * ```ts
 * const changed = new BreakerEvent<string>()
 * using subscription = changed.subscribe((state) => console.log(state))
 * changed.emit('open')
 * ```
 */
export class BreakerEvent<T> {
  #listeners: Listener<T>[] = []

  get size(): number {
    return this.#listeners.length
  }

  /** `owner` names the subscribing method in the TypeError a listener that is no function gets. */
  subscribe(listener: Listener<T>, owner = 'BreakerEvent.subscribe'): Disposable {
    listenerArgument(owner, listener)
    // Copy on write: a listener unsubscribing during emit does not skip its neighbour.
    this.#listeners = [...this.#listeners, listener]
    let active = true
    return {
      [Symbol.dispose]: () => {
        if (!active) return
        active = false
        const index = this.#listeners.indexOf(listener)
        if (index !== -1) this.#listeners = this.#listeners.toSpliced(index, 1)
      },
    }
  }

  emit(event: T): void {
    const listeners = this.#listeners
    for (let i = 0; i < listeners.length; i++) {
      try {
        ;(listeners[i] as Listener<T>)(event)
      } catch (error) {
        queueMicrotask(() => {
          throw error
        })
      }
    }
  }

  clear(): void {
    this.#listeners = []
  }
}
