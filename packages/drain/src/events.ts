/**
 * A typed event with `on(listener) → Disposable` subscriptions. A listener that
 * throws never breaks the shutdown sequence: its error is handed to `onError`.
 *
 * @example
 * ```ts
 * const changed = new DrainEvent<{ from: string; to: string }>()
 * using subscription = changed.on(({ to }) => console.log(to))
 * changed.emit({ from: 'serving', to: 'draining' })
 * ```
 */
export class DrainEvent<T> {
  readonly #listeners = new Set<(event: T) => void>()
  readonly #onError: (error: unknown) => void

  constructor(onError: (error: unknown) => void = () => {}) {
    this.#onError = onError
  }

  /** Subscribes; dispose the result to unsubscribe. */
  on(listener: (event: T) => void): Disposable {
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
