import {
  addCollector,
  counter,
  FastCounter,
  FastHistogram,
  gauge,
  histogram,
  incSeries,
  type MetricsTarget,
  zeroSeries,
} from '@ballast/core'
import type { Counter, Gauge, Histogram } from 'prom-client'
import type { RejectionReason } from './errors.js'

/** Outcome of one attempt (or refused call) as counted by `ballast_breaker_calls_total`. */
export type CallOutcome = 'success' | 'failure' | 'timeout' | 'rejected' | 'ignored'
/** Outcomes that ran the work and so have a duration. */
export type ExecutedOutcome = Exclude<CallOutcome, 'rejected'>

/** The breaker state as a metric label value. */
export type StateLabel = 'closed' | 'open' | 'half_open' | 'disabled'

const STATES: readonly StateLabel[] = ['closed', 'open', 'half_open', 'disabled']
const OUTCOMES: readonly CallOutcome[] = ['success', 'failure', 'timeout', 'rejected', 'ignored']
const EXECUTED: readonly ExecutedOutcome[] = ['success', 'failure', 'timeout', 'ignored']
const REJECTIONS: readonly string[] = ['open', 'half_open', 'capacity']
const FALLBACK_RESULTS: readonly string[] = ['success', 'failure']

/**
 * Buckets of `ballast_breaker_call_duration_seconds`, in seconds: from a fast
 * cache hit to a slow dependency's full attempt budget.
 *
 * @example
 * ```ts
 * DURATION_BUCKETS.length // 12 buckets (+Inf implied)
 * ```
 */
export const DURATION_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** What the metrics read from a breaker at scrape time. */
export interface BreakerGauges {
  stateLabel(): StateLabel
  concurrent(): number
  failureRatio(): number
}

/**
 * The events a breaker reports. The breaker knows nothing of Prometheus: it calls
 * an observer, and {@link BreakerMetrics} is the observer that turns the calls
 * into series.
 */
export interface BreakerObserver {
  /** A call ended; `seconds` is how long its attempt ran, absent when none ran. */
  call(outcome: CallOutcome, seconds?: number): void
  rejected(reason: RejectionReason): void
  fallback(result: 'success' | 'failure'): void
  retry(): void
  transition(state: StateLabel): void
  dispose(): void
}

/** The metric families of every breaker on one registry. */
export interface Instruments {
  state: Gauge<'breaker' | 'state'>
  transitions: Counter<'breaker' | 'state'>
  calls: Counter<'breaker' | 'outcome'>
  duration: Histogram<'breaker' | 'outcome'>
  rejected: Counter<'breaker' | 'reason'>
  fallbacks: Counter<'breaker' | 'result'>
  retries: Counter<'breaker'>
  failureRatio: Gauge<'breaker'>
  thresholdRatio: Gauge<'breaker'>
  concurrent: Gauge<'breaker'>
}

/**
 * Gets or creates the breaker metrics on `target` (no series). Internal: also used
 * by `BreakerGroup` to check its registry at construction.
 */
export function instruments(target: MetricsTarget): Instruments {
  return {
    state: gauge(target, {
      name: 'breaker_state',
      help: 'Current state of each circuit breaker: 1 for the state it is in, 0 for the others.',
      labelNames: ['breaker', 'state'],
    }),
    transitions: counter(target, {
      name: 'breaker_transitions_total',
      help: 'State transitions of each circuit breaker, by the state entered.',
      labelNames: ['breaker', 'state'],
    }),
    calls: counter(target, {
      name: 'breaker_calls_total',
      help: 'Calls through each circuit breaker (each attempt counts), by outcome.',
      labelNames: ['breaker', 'outcome'],
    }),
    duration: histogram(target, {
      name: 'breaker_call_duration_seconds',
      help: 'Duration of the attempts that ran, by outcome.',
      labelNames: ['breaker', 'outcome'],
      buckets: DURATION_BUCKETS,
    }),
    rejected: counter(target, {
      name: 'breaker_rejected_calls_total',
      help: 'Calls refused without running, by reason.',
      labelNames: ['breaker', 'reason'],
    }),
    fallbacks: counter(target, {
      name: 'breaker_fallbacks_total',
      help: 'Fallbacks run, by whether they produced a value or threw.',
      labelNames: ['breaker', 'result'],
    }),
    retries: counter(target, {
      name: 'breaker_retries_total',
      help: 'Attempts after the first try.',
      labelNames: ['breaker'],
    }),
    failureRatio: gauge(target, {
      name: 'breaker_failure_ratio',
      help: 'Failed calls over calls in the rolling window (0..1).',
      labelNames: ['breaker'],
      // Each worker of a cluster trips on its own window: the worst one is what can open.
      aggregator: 'max',
    }),
    thresholdRatio: gauge(target, {
      name: 'breaker_failure_threshold_ratio',
      help: 'Failure ratio above which the breaker opens (0..1).',
      labelNames: ['breaker'],
      // The same option in every worker of a cluster.
      aggregator: 'first',
    }),
    concurrent: gauge(target, {
      name: 'breaker_concurrent_calls',
      help: 'Executions in flight, until their work settles.',
      labelNames: ['breaker'],
    }),
  }
}

// How many live breakers hold each name's series, per metric (so per registry and
// prefix): breakers sharing a name share its series, and the last one disposed removes them.
// Kept on the metric under a process-wide symbol rather than in this module: two installed
// copies of the package share the metric, so they must share the count, or disposing a
// breaker of one copy would remove the series of a live breaker of the other.
const holdersKey = Symbol.for('ballast.breaker.holders')

function holdersOf(metric: object): Map<string, number> {
  const shared = metric as { [holdersKey]?: Map<string, number> }
  shared[holdersKey] ??= new Map<string, number>()
  return shared[holdersKey]
}

/**
 * Prometheus series of one breaker (section 4 of the design). All label sets exist
 * at 0 from construction; the state, ratio and concurrency gauges are read at
 * scrape time; {@link dispose} removes every series of this breaker (once no
 * other breaker of the same name on the registry is left to share them).
 */
export class BreakerMetrics implements BreakerObserver {
  readonly #name: string
  readonly #m: Instruments
  readonly #removeCollectors: (() => void)[]
  #disposed = false
  // Bound children, so the hot path does no label-object allocation.
  readonly #calls: Record<CallOutcome, FastCounter>
  readonly #durations: Record<ExecutedOutcome, FastHistogram>

  constructor(target: MetricsTarget, name: string, threshold: number, gauges: BreakerGauges) {
    const m = instruments(target)
    this.#m = m
    this.#name = name
    const breaker = name
    const held = holdersOf(m.calls)
    held.set(name, (held.get(name) ?? 0) + 1)
    zeroSeries(
      m.transitions,
      STATES.map((state) => ({ breaker, state })),
    )
    zeroSeries(
      m.calls,
      OUTCOMES.map((outcome) => ({ breaker, outcome })),
    )
    zeroSeries(
      m.duration,
      EXECUTED.map((outcome) => ({ breaker, outcome })),
    )
    zeroSeries(
      m.rejected,
      REJECTIONS.map((reason) => ({ breaker, reason })),
    )
    zeroSeries(
      m.fallbacks,
      FALLBACK_RESULTS.map((result) => ({ breaker, result })),
    )
    zeroSeries(m.retries, [{ breaker }])
    const stateLabels = STATES.map((state) => ({ breaker, state }))
    const readState = () => {
      const current = gauges.stateLabel()
      for (const labels of stateLabels) m.state.set(labels, labels.state === current ? 1 : 0)
    }
    const readRatio = () => m.failureRatio.set({ breaker }, gauges.failureRatio())
    const readConcurrent = () => m.concurrent.set({ breaker }, gauges.concurrent())
    // A constant, yet set at every scrape: a registry's resetMetrics() would lose it for good.
    const readThreshold = () => m.thresholdRatio.set({ breaker }, threshold)
    readState()
    readRatio()
    readConcurrent()
    readThreshold()
    this.#removeCollectors = [
      addCollector(m.state as Gauge<string>, readState),
      addCollector(m.failureRatio as Gauge<string>, readRatio),
      addCollector(m.concurrent as Gauge<string>, readConcurrent),
      addCollector(m.thresholdRatio as Gauge<string>, readThreshold),
    ]
    this.#calls = Object.fromEntries(OUTCOMES.map((outcome) => [outcome, new FastCounter(m.calls, { breaker, outcome })])) as Record<
      CallOutcome,
      FastCounter
    >
    this.#durations = Object.fromEntries(
      EXECUTED.map((outcome) => [outcome, new FastHistogram(m.duration, { breaker, outcome })]),
    ) as Record<ExecutedOutcome, FastHistogram>
  }

  call(outcome: CallOutcome, seconds?: number): void {
    if (this.#disposed) return
    this.#calls[outcome].inc()
    if (outcome !== 'rejected' && seconds !== undefined) this.#durations[outcome].observe(seconds)
  }

  rejected(reason: RejectionReason): void {
    if (this.#disposed) return
    this.#calls.rejected.inc()
    incSeries(this.#m.rejected, { breaker: this.#name, reason: reason === 'half-open' ? 'half_open' : reason })
  }

  fallback(result: 'success' | 'failure'): void {
    if (this.#disposed) return
    incSeries(this.#m.fallbacks, { breaker: this.#name, result })
  }

  retry(): void {
    if (this.#disposed) return
    incSeries(this.#m.retries, { breaker: this.#name })
  }

  transition(state: StateLabel): void {
    if (this.#disposed) return
    incSeries(this.#m.transitions, { breaker: this.#name, state })
  }

  dispose(): void {
    if (this.#disposed) return
    // Calls still settling after this must not re-create the removed series.
    this.#disposed = true
    for (const remove of this.#removeCollectors) remove()
    const breaker = this.#name
    const m = this.#m
    const held = holdersOf(m.calls)
    const others = (held.get(breaker) ?? 1) - 1
    if (others > 0) {
      // Another breaker of this name still counts into these series.
      held.set(breaker, others)
      return
    }
    held.delete(breaker)
    for (const state of STATES) {
      m.state.remove({ breaker, state })
      m.transitions.remove({ breaker, state })
    }
    for (const outcome of OUTCOMES) m.calls.remove({ breaker, outcome })
    for (const outcome of EXECUTED) m.duration.remove({ breaker, outcome })
    for (const reason of REJECTIONS) m.rejected.remove({ breaker, reason })
    for (const result of FALLBACK_RESULTS) m.fallbacks.remove({ breaker, result })
    m.retries.remove({ breaker })
    m.failureRatio.remove({ breaker })
    m.thresholdRatio.remove({ breaker })
    m.concurrent.remove({ breaker })
  }
}
