import { createRequire } from 'node:module'
import { ClockTimer } from '@ballast/core'

// First-party declarations of the part of opossum 10 ballast uses (the community
// typings lag behind the releases). The internals below are pinned to opossum
// 10.0.0 (exact dependency); `openCircuit` fails loudly if they move.

/** One bucket of opossum's rolling window. */
export interface OpossumBucket {
  fires: number
  failures: number
  successes: number
  [count: string]: unknown
}

interface OpossumStatus {
  increment(property: string, latency?: number): void
  readonly stats: { fires: number; failures: number }
}

/**
 * What an ignored attempt resolves opossum's action with: opossum's `success`
 * event carrying it is dropped, so the call is neither a success nor a failure
 * (opossum still releases its semaphore and settles the call's promise).
 */
export const IGNORED: unique symbol = Symbol('ballast.breaker.ignored')

export interface OpossumOptions {
  name: string
  timeout: false
  resetTimeout: number
  errorThresholdPercentage: number
  volumeThreshold: number
  rollingCountTimeout: number
  rollingCountBuckets: number
  rollingPercentilesEnabled: false
  enableSnapshots: false
}

/** The opossum `CircuitBreaker` surface ballast relies on. */
export interface OpossumCircuit<A> {
  fire(arg: A): Promise<unknown>
  on(event: 'open' | 'halfOpen' | 'close', listener: () => void): this
  shutdown(): void
  emit(event: string | symbol, ...args: unknown[]): boolean
  readonly closed: boolean
  readonly opened: boolean
  readonly halfOpen: boolean
  readonly pendingClose: boolean
  readonly enabled: boolean
  readonly isShutdown: boolean
  readonly status: OpossumStatus
  readonly semaphore: { release(): void }
  readonly warmUp: boolean
  readonly volumeThreshold: number
  readonly options: { errorThresholdPercentage: number }
  open(): void
}

type OpossumConstructor = new <A>(
  action: (arg: A) => PromiseLike<unknown>,
  options: OpossumOptions & { rotateBucketController: RotateController },
) => OpossumCircuit<A>

const require = createRequire(import.meta.url)
let CircuitBreaker: OpossumConstructor | undefined

function symbolNamed(target: object, description: string): symbol {
  const found = Object.getOwnPropertySymbols(target).find((symbol) => symbol.description === description)
  if (found === undefined) throw new Error(`@ballast/breaker: opossum internals changed (no "${description}" symbol); pin opossum 10.0.0`)
  return found
}

/**
 * opossum's `rotateBucketController`: with one, its window turns on the controller's
 * `rotate` events and it arms no interval of its own. It is documented as an
 * EventEmitter, of which opossum 10.0.0 uses the three methods below; this holds
 * the one listener, at a tenth of an emitter's size (a BreakerGroup has many breakers).
 */
class RotateController {
  rotate: (() => void) | undefined = undefined

  listenerCount(): number {
    return this.rotate === undefined ? 0 : 1
  }

  on(_event: 'rotate', listener: () => void): this {
    this.rotate = listener
    return this
  }

  removeListener(): this {
    this.rotate = undefined
    return this
  }
}

/** True while a bucket of the window counts a call or a failure: what the trip rule reads. */
function holdsCalls(window: readonly OpossumBucket[]): boolean {
  for (const bucket of window) if (bucket.fires !== 0 || bucket.failures !== 0) return true
  return false
}

/**
 * Turns an opossum window by one bucket every `period` ms, only while the window
 * holds calls. opossum's own `setInterval` ticks for as long as the circuit
 * lives, on the clock in place when it was made: `runAllTimers()` of fake timers
 * never ended while a breaker existed, and a breaker made under real timers kept
 * its window on them in a test that advances fake time. This timer is armed when
 * a call is counted in an empty window, or under another `setTimeout` than the
 * one it runs on (fake timers installed or removed since), and stops once the
 * window is empty.
 */
class WindowRotation {
  readonly #window: readonly OpossumBucket[]
  readonly #period: number
  readonly #controller: RotateController
  readonly #timer = new ClockTimer<WindowRotation>(WindowRotation.#tick, this)

  constructor(window: readonly OpossumBucket[], period: number, controller: RotateController) {
    this.#window = window
    this.#period = period
    this.#controller = controller
  }

  /** A call or an outcome was counted: one comparison on the hot path. */
  counted(): void {
    if (!this.#timer.current) this.#timer.start(this.#period)
  }

  stop(): void {
    this.#timer.stop()
  }

  static #tick(rotation: WindowRotation): void {
    rotation.#controller.rotate?.()
    if (holdsCalls(rotation.#window)) rotation.#timer.again(rotation.#period)
    else rotation.#timer.stop()
  }
}

/**
 * An opossum circuit plus the two internal levers opossum gives no method for:
 * the current bucket of its rolling window (to un-count a call that turned out
 * to be the caller's problem, and to keep counts without latency arrays) and
 * its half-open "trial available" flag (to hand the trial back when the trial
 * call was cancelled by its caller).
 */
export interface OpenedCircuit<A> {
  readonly circuit: OpossumCircuit<A>
  /** The bucket that counts calls right now. */
  currentBucket(): OpossumBucket
  /** Lets one more trial call through while half-open. */
  rearmTrial(): void
  /** Starts a new window, of new buckets (when the circuit closes): see the implementation. */
  resetWindow(): void
  /**
   * Counts a call that ran outside `fire()` while the circuit was closed, as
   * `fire()` would have at its start (`fire` event).
   */
  fired(): OpossumBucket
  /** The outside call succeeded: counted as `fire()` counts it. */
  succeeded(): void
  /** The outside call failed or timed out: counted, and a closed circuit trips, as `fire()` would do it. */
  failed(error: unknown): void
  /** Shuts the circuit down and stops its window's rotation. */
  shutdown(): void
}

/** Creates an opossum circuit with ballast's settings. Loads opossum on first use, never on import. */
export function openCircuit<A>(action: (arg: A) => PromiseLike<unknown>, options: OpossumOptions): OpenedCircuit<A> {
  CircuitBreaker ??= require('opossum') as OpossumConstructor
  const controller = new RotateController()
  const circuit = new CircuitBreaker(action, { ...options, rotateBucketController: controller })
  try {
    if (controller.rotate === undefined) {
      throw new Error('@ballast/breaker: opossum internals changed (rotateBucketController); pin opossum 10.0.0')
    }
    const pendingClose = symbolNamed(circuit, 'pending-close')
    const status = circuit.status
    const windowSymbol = symbolNamed(status, 'window')
    const window = (status as unknown as Record<symbol, OpossumBucket[]>)[windowSymbol]
    if (!Array.isArray(window)) throw new Error('@ballast/breaker: opossum internals changed (window); pin opossum 10.0.0')
    const rotation = new WindowRotation(window, Math.floor(options.rollingCountTimeout / options.rollingCountBuckets), controller)
    const emit = circuit.emit
    circuit.emit = function emitCounted(
      this: OpossumCircuit<A>,
      event: string | symbol,
      first?: unknown,
      second?: unknown,
      third?: unknown,
    ) {
      if (first === IGNORED && event === 'success') return false
      return emit.call(this, event, first, second, third)
    }
    // opossum pushes every latency into the bucket even with rolling percentiles
    // off; ballast measures latency in its histogram, so only counts are kept.
    status.increment = (property: string) => {
      const bucket = window[0] as Record<string, number>
      bucket[property] = (bucket[property] ?? 0) + 1
      // What the trip rule reads, as holdsCalls: a lone success or refusal keeps no window turning.
      if (property === 'fires' || property === 'failures') rotation.counted()
    }
    return {
      circuit,
      currentBucket: () => window[0] as OpossumBucket,
      rearmTrial: () => {
        ;(circuit as unknown as Record<symbol, boolean>)[pendingClose] = true
      },
      // New buckets, not zeroed ones: a call counted in an old one and taken back later
      // (ignored) must not take a call of the new window out.
      resetWindow: () => {
        for (let i = 0; i < window.length; i++) {
          const fresh: Record<string, unknown> = {}
          for (const [key, value] of Object.entries(window[i] as OpossumBucket)) {
            fresh[key] =
              typeof value === 'number' ? 0 : Array.isArray(value) ? [] : typeof value === 'object' && value !== null ? {} : value
          }
          window[i] = fresh as OpossumBucket
        }
      },
      fired: () => {
        const bucket = window[0] as OpossumBucket
        bucket.fires++
        rotation.counted()
        return bucket
      },
      // A call admitted while closed may end after the circuit opened: it is counted, but only
      // the half-open trial (which runs through fire()) closes or reopens the circuit, and a
      // failure that arrives while open does not restart the reset timer.
      // No rotation.counted(): the call's start was counted, and the trip rule reads no successes.
      succeeded: () => {
        ;(window[0] as OpossumBucket).successes++
      },
      failed: (error: unknown) => {
        // opossum 10.0.0's fail(): count, then open past the threshold.
        circuit.emit('failure', error, 0, [])
        if (!circuit.closed || circuit.warmUp) return
        const { fires, failures } = circuit.status.stats
        if (fires < circuit.volumeThreshold) return
        if ((failures / fires) * 100 > circuit.options.errorThresholdPercentage) circuit.open()
      },
      shutdown: () => {
        rotation.stop()
        circuit.shutdown()
      },
    }
  } catch (error) {
    circuit.shutdown()
    throw error
  }
}
