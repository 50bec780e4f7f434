import { timerDelay } from '@ballast/core'

/** What ended an attempt early. */
export type AbortSource = 'timer' | 'deadline' | 'caller' | 'breaker'

interface Link {
  readonly signal: AbortSignal
  readonly source: AbortSource
  readonly listener: () => void
}

function fire(scope: AttemptScope): void {
  scope.timedOut()
}

/**
 * The lifetime of one attempt: its own AbortController, its budget timer and its
 * links to the caller's deadline, the caller's `init.signal` and the breaker's
 * attempt signal. It outlives the response headers on purpose: the timer and
 * the links are released only when the body has been read (or cancelled) or the
 * attempt aborts, so a slow body is cut at the same budget as slow headers.
 * Every release is idempotent; nothing is left behind after it.
 */
export class AttemptScope {
  readonly #controller = new AbortController()
  readonly #links: Link[] = []
  readonly #timeoutReason: () => unknown
  readonly #expiresAt: number
  #timer: NodeJS.Timeout | undefined
  #source: AbortSource | undefined
  #released = false

  constructor(budget: number, timeoutReason: () => unknown) {
    this.#timeoutReason = timeoutReason
    this.#expiresAt = performance.now() + budget
    const delay = timerDelay(budget)
    if (delay !== undefined) this.#timer = setTimeout(fire, delay, this)
  }

  /** The signal handed to fetch. */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** What aborted the attempt, if anything did. */
  get source(): AbortSource | undefined {
    return this.#source
  }

  /** Milliseconds left of the attempt budget. */
  remaining(): number {
    return Math.max(0, this.#expiresAt - performance.now())
  }

  /** Aborts this attempt when `signal` aborts, with its reason. */
  link(signal: AbortSignal | undefined, source: AbortSource): void {
    if (signal === undefined || this.#released) return
    if (signal.aborted) {
      this.#abort(source, signal.reason)
      return
    }
    const listener = () => this.#abort(source, signal.reason)
    signal.addEventListener('abort', listener, { once: true })
    this.#links.push({ signal, source, listener })
  }

  timedOut(): void {
    this.#timer = undefined
    if (!this.#released) this.#abort('timer', this.#timeoutReason())
  }

  /** Clears the timer and every link. The signal stays as it is. */
  release(): void {
    if (this.#released) return
    this.#released = true
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    for (const { signal, listener } of this.#links) signal.removeEventListener('abort', listener)
    this.#links.length = 0
  }

  #abort(source: AbortSource, reason: unknown): void {
    if (this.#source !== undefined) return
    this.#source = source
    this.release()
    this.#controller.abort(reason)
  }
}
