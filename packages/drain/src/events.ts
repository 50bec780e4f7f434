import { listenerArgument } from '@ballast/core'

/**
 * A typed event with `on(listener) → Disposable` subscriptions. A listener that
 * throws never breaks the shutdown sequence: its error is handed to `onError`.
 *
 * @example
 * ```ts
 * const changed = new DrainEvent<{ from: string; to: string }>('Drain.onStateChange')
 * using subscription = changed.on(({ to }) => console.log(to))
 * changed.emit({ from: 'serving', to: 'draining' })
 * ```
 */
export class DrainEvent<T> {
  readonly #listeners = new Set<(event: T) => void>()
  readonly #owner: string
  readonly #onError: (error: unknown) => void

  /** `owner` names the subscribing method in errors (`'Drain.onStateChange'`). */
  constructor(owner: string, onError: (error: unknown) => void = () => {}) {
    this.#owner = owner
    this.#onError = onError
  }

  /** Subscribes; dispose the result to unsubscribe. A listener that is no function is refused here. */
  on(listener: (event: T) => void): Disposable {
    listenerArgument(this.#owner, listener)
    // A wrapper so the same function subscribed twice is two subscriptions.
    const entry = (event: T) => listener(event)
    this.#listeners.add(entry)
    return {
      [Symbol.dispose]: () => {
        this.#listeners.delete(entry)
      },
    }
  }

  /** Calls every listener in subscription order. */
  emit(event: T): void {
    for (const listener of this.#listeners) {
      try {
        listener(event)
      } catch (error) {
        this.#onError(error)
      }
    }
  }
}
