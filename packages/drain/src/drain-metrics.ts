import {
  addCollector,
  counter,
  gauge,
  histogram,
  incSeries,
  labelProduct,
  type MetricsTarget,
  observeSeries,
  zeroSeries,
} from '@ballast/core'
import type { Drain } from './drain.js'

const STATES = ['serving', 'draining', 'closing'] as const
const CLOSE_REASONS = ['idle', 'after_response', 'forced'] as const
const HOOK_OUTCOMES = ['ok', 'failed', 'timed_out'] as const
const HOOK_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * Exports a drain's life as Prometheus metrics. It only subscribes to the drain's
 * public events and reads its getters at scrape time: the drain knows nothing of
 * metrics. Dispose to unsubscribe (series stay, shared with other drains).
 *
 * @example
 * ```ts
 * // Drain calls it itself with its `registry` and `prefix` options:
 * const subscription = observeDrain(drain, metricsTarget('Drain', { registry }))
 * ```
 */
export function observeDrain(drain: Drain, target: MetricsTarget): Disposable {
  const state = gauge(target, {
    name: 'drain_state',
    help: 'Drain state: 1 for the current one of serving, draining, closing (all 0 once stopped).',
    labelNames: ['state'],
  })
  const inflight = gauge(target, {
    name: 'drain_inflight_requests',
    help: 'Requests in flight through the drain middleware.',
    labelNames: [],
  })
  const open = gauge(target, { name: 'drain_open_connections', help: 'Open connections on servers attached to the drain.', labelNames: [] })
  const started = gauge(target, {
    name: 'drain_started_timestamp_seconds',
    help: 'Unix time when draining started; 0 while serving.',
    labelNames: [],
    // In a cluster: the first worker's start, once every worker drains (0 while one still serves).
    aggregator: 'min',
  })
  const age = gauge(target, {
    name: 'drain_age_seconds',
    help: "Seconds since the drain started, by the process's monotonic clock; 0 while serving, the drain's duration once stopped.",
    labelNames: [],
    // In a cluster: the slowest worker's drain, which is what the grace period cuts short.
    aggregator: 'max',
  })
  const rejected = counter(target, {
    name: 'drain_rejected_requests_total',
    help: 'Requests answered 503 because the service had already stopped serving.',
    labelNames: [],
  })
  const closed = counter(target, {
    name: 'drain_closed_connections_total',
    help: 'Connections closed during the drain, by reason.',
    labelNames: ['reason'],
  })
  const hooks = histogram(target, {
    name: 'drain_hook_duration_seconds',
    help: 'Duration of shutdown hooks, by hook and outcome.',
    labelNames: ['hook', 'outcome'],
    buckets: HOOK_BUCKETS,
  })

  zeroSeries(rejected, [{}])
  zeroSeries(closed, labelProduct({ reason: CLOSE_REASONS }))
  const zeroHook = (name: string) => zeroSeries(hooks, labelProduct({ hook: [name], outcome: HOOK_OUTCOMES }))
  for (const name of drain.hooks) zeroHook(name)

  const removers = [
    addCollector(state, () => {
      for (const value of STATES) state.set({ state: value }, drain.state === value ? 1 : 0)
    }),
    addCollector(inflight, () => inflight.set(drain.inflight)),
    addCollector(open, () => open.set(drain.openConnections)),
    addCollector(started, () => started.set(drain.startedAt === undefined ? 0 : drain.startedAt / 1000)),
    // Measured by the process itself at scrape time: an age Prometheus computed from the start
    // timestamp would mix its clock with the target's, and stop at the last scrape's timestamp.
    addCollector(age, () => age.set(drain.elapsedMs / 1000)),
  ]
  const subscriptions = [
    drain.onHookRegistered(({ name }) => zeroHook(name)),
    drain.onReject(() => incSeries(rejected, {})),
    drain.onConnectionClose(({ reason }) => incSeries(closed, { reason })),
    drain.onHookEnd(({ name, outcome, durationMs }) => observeSeries(hooks, { hook: name, outcome }, durationMs / 1000)),
  ]
  return {
    [Symbol.dispose]() {
      for (const remove of removers) remove()
      for (const subscription of subscriptions) subscription[Symbol.dispose]()
    },
  }
}
