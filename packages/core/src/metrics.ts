import { type Aggregator, Counter, Gauge, register as globalRegistry, Histogram, type Registry } from 'prom-client'
import { hasSeries, incSeries } from './fast-series.js'
import { describeValue, oneOfOption, stringOption } from './options.js'

/**
 * The metric options every ballast component accepts.
 *
 * @example
 * ```ts
 * const options: MetricsOptions = { registry: new Registry(), prefix: 'orders_' }
 * const breaker = new Breaker({ name: 'inventory', ...options })
 * ```
 */
export interface MetricsOptions {
  /** Where series are registered. Default: prom-client's global `register`. */
  registry?: Registry | undefined
  /** Prepended to every metric name. Default `ballast_`; `''` for none. */
  prefix?: string | undefined
}

/**
 * Prefix of every metric name unless the `prefix` option says otherwise.
 *
 * @example
 * ```ts
 * const state = register.getSingleMetric(`${DEFAULT_PREFIX}breaker_state`) // ballast_breaker_state
 * ```
 */
export const DEFAULT_PREFIX = 'ballast_'

const METRIC_PREFIX = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/

/**
 * A validated registry plus prefix, from which a component creates its metrics.
 *
 * @example
 * ```ts
 * const target: MetricsTarget = metricsTarget('JobQueue', { prefix: 'jobs_' }) // target.prefix === 'jobs_'
 * ```
 */
export interface MetricsTarget {
  readonly registry: Registry
  readonly prefix: string
}

/**
 * Validates the `registry` and `prefix` options of a component at construction.
 * Nothing is registered here: metrics are created lazily by the component, never
 * on import.
 *
 * @example
 * ```ts
 * const target = metricsTarget('JobQueue', options) // TypeError / RangeError for a bad registry or prefix
 * const runs = counter(target, { name: 'runs_total', help: 'Jobs run.', labelNames: ['queue'] })
 * ```
 */
export function metricsTarget(owner: string, options: MetricsOptions = {}): MetricsTarget {
  const registry = options.registry ?? globalRegistry
  if (
    typeof registry !== 'object' ||
    registry === null ||
    typeof (registry as Partial<Registry>).getSingleMetric !== 'function' ||
    typeof (registry as Partial<Registry>).registerMetric !== 'function'
  ) {
    throw new TypeError(`${owner}: option "registry" must be a prom-client Registry, got ${describeValue(registry)}`)
  }
  const prefix = stringOption(owner, 'prefix', options.prefix, DEFAULT_PREFIX, METRIC_PREFIX)
  return { registry, prefix }
}

/**
 * What {@link counter}, {@link gauge} and {@link histogram} create or adopt: a
 * name (the target's prefix is added), its help text and its label names.
 *
 * @example
 * ```ts
 * const spec: MetricSpec<'queue'> = { name: 'jobs_total', help: 'Jobs processed.', labelNames: ['queue'] }
 * const jobs = counter(metricsTarget('jobs', {}), spec)
 * ```
 */
export interface MetricSpec<L extends string> {
  /** Without the prefix: `requests_total` becomes `ballast_requests_total`. */
  name: string
  help: string
  labelNames: readonly L[]
}

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>

function getOrCreate<M extends AnyMetric>(
  target: MetricsTarget,
  type: 'counter' | 'gauge' | 'histogram',
  spec: MetricSpec<string>,
  create: (name: string) => M,
): M {
  const name = target.prefix + spec.name
  const existing = target.registry.getSingleMetric(name) as (AnyMetric & { type?: string; labelNames?: string[] }) | undefined
  if (existing === undefined) return create(name)
  const sameLabels =
    existing.labelNames?.length === spec.labelNames.length && spec.labelNames.every((label) => existing.labelNames?.includes(label))
  if (existing.type !== type || !sameLabels) {
    throw new TypeError(
      `metric "${name}" is already registered as a ${existing.type} with labels ${describeValue(existing.labelNames)}; ` +
        `ballast needs a ${type} with labels ${describeValue(spec.labelNames)} (use another "prefix" or "registry")`,
    )
  }
  return existing as M
}

/**
 * Gets the counter `prefix + name` from the registry, or creates it. A second
 * component on the same registry shares the metric (and so its series) rather than
 * failing with prom-client's "already registered" error.
 *
 * @example
 * ```ts
 * const rejected = counter(target, { name: 'queue_rejected_total', help: 'Jobs refused.', labelNames: ['queue'] })
 * rejected.inc({ queue: 'emails' })
 * ```
 */
export function counter<L extends string>(target: MetricsTarget, spec: MetricSpec<L>): Counter<L> {
  return getOrCreate(
    target,
    'counter',
    spec,
    (name) => new Counter({ name, help: spec.help, labelNames: spec.labelNames, registers: [target.registry] }),
  ) as Counter<L>
}

const AGGREGATORS: readonly Aggregator[] = ['sum', 'first', 'min', 'max', 'average', 'omit']

/**
 * Gets or creates a gauge. A `collect` callback runs at scrape time and can never
 * break the scrape: an exception inside it is swallowed and the previous values
 * are served.
 *
 * `aggregator` is how prom-client's `AggregatorRegistry` combines the workers of
 * a cluster (default `'sum'`): a ratio, a threshold or a timestamp summed over
 * workers is meaningless, so such gauges name another. A gauge registered before
 * (and adopted) keeps the aggregator it was made with.
 *
 * @example
 * ```ts
 * gauge(target, {
 *   name: 'queue_depth', help: 'Jobs waiting.', labelNames: ['queue'],
 *   collect() { this.set({ queue: 'emails' }, emails.length) },
 * })
 * gauge(target, { name: 'queue_oldest_timestamp_seconds', help: 'Oldest job.', labelNames: [], aggregator: 'min' })
 * ```
 */
export function gauge<L extends string>(
  target: MetricsTarget,
  spec: MetricSpec<L> & { collect?: (this: Gauge<L>) => void | Promise<void>; aggregator?: Aggregator },
): Gauge<L> {
  const aggregator = oneOfOption('gauge', 'aggregator', spec.aggregator, AGGREGATORS, 'sum')
  const created = getOrCreate(
    target,
    'gauge',
    spec,
    (name) => new Gauge({ name, help: spec.help, labelNames: spec.labelNames, aggregator, registers: [target.registry] }),
  ) as Gauge<L>
  const collect = spec.collect
  // Through addCollector, so that a second gauge() on the same name adds its callback instead of losing it.
  if (collect !== undefined) addCollector(created as Gauge<string>, () => collect.call(created))
  return created
}

/**
 * Gets or creates a histogram; `buckets` are in seconds.
 *
 * @example
 * ```ts
 * const duration = histogram(target, { name: 'job_duration_seconds', help: 'Job run time.', labelNames: ['queue'], buckets: [0.01, 0.1, 1, 10] })
 * duration.observe({ queue: 'emails' }, 0.25)
 * ```
 */
export function histogram<L extends string>(target: MetricsTarget, spec: MetricSpec<L> & { buckets: readonly number[] }): Histogram<L> {
  return getOrCreate(
    target,
    'histogram',
    spec,
    (name) =>
      new Histogram({
        name,
        help: spec.help,
        labelNames: spec.labelNames,
        buckets: [...spec.buckets],
        registers: [target.registry],
      }),
  ) as Histogram<L>
}

/**
 * Wraps a gauge `collect` callback so it never throws (prom-client would fail the
 * whole scrape). Gauges that several components share chain their callbacks
 * through {@link addCollector} instead of replacing each other's.
 *
 * @example
 * ```ts
 * new Gauge({ name: 'queue_depth', help: 'Jobs waiting.', collect: safeCollect(function (this: Gauge) { this.set(emails.length) }) })
 * ```
 */
export function safeCollect<T>(collect: (this: T) => void | Promise<void>): (this: T) => void | Promise<void> {
  return function collectSafely(this: T) {
    try {
      const result = collect.call(this)
      // prom-client awaits an async collect: a rejection keeps the previous values, as a throw does.
      if (result instanceof Promise) return result.then(undefined, ignore)
    } catch {
      // A scrape must always succeed; the previous values stay.
    }
    return undefined
  }
}

function ignore(): void {}

const collectors = Symbol.for('ballast.metrics.collectors')

type Collect = () => void | Promise<void>
type CollectingGauge = Gauge<string> & { [collectors]?: Set<Collect>; collect?: Collect }

/**
 * Registers a scrape-time callback on a shared gauge and returns a function
 * removing it. Several instances (two breakers on one registry) each add their
 * own; each runs in isolation so one failing callback cannot hide the others.
 *
 * @example
 * ```ts
 * const stop = addCollector(stateGauge, () => stateGauge.set({ breaker: name }, 1))
 * // on dispose
 * stop()
 * ```
 */
export function addCollector(metric: Gauge<string>, collect: () => void | Promise<void>): () => void {
  const shared = metric as CollectingGauge
  let set = shared[collectors]
  if (set === undefined) {
    const created = new Set<Collect>()
    set = created
    shared[collectors] = created
    // A callback the gauge was made with (outside ballast) keeps running, first.
    const own = shared.collect
    if (own !== undefined) created.add(() => own.call(shared))
    shared.collect = () => {
      const pending: Promise<void>[] = []
      for (const callback of created) {
        const result = safeCollect(callback).call(undefined)
        if (result !== undefined) pending.push(result)
      }
      return pending.length === 0 ? undefined : Promise.all(pending).then(ignore)
    }
  }
  set.add(collect)
  return () => {
    set.delete(collect)
  }
}

// By shape, not class: the metric may come from another copy of prom-client.
function isHistogram(metric: Counter<string> | Histogram<string>): metric is Histogram<string> {
  return typeof (metric as Partial<Histogram<string>>).observe === 'function'
}

/**
 * Creates each label set at zero so it exists before the first event. A series
 * that exists already keeps its value: a second instance sharing the series, or
 * a route seen with another method, must not reset what was counted.
 *
 * @example
 * ```ts
 * zeroSeries(runs, labelProduct({ queue: ['emails', 'sms'], outcome: ['ok', 'failed'] })) // 4 series at 0 before the first job
 * ```
 */
export function zeroSeries(metric: Counter<string> | Histogram<string>, labelSets: readonly Record<string, string>[]): void {
  for (const labels of labelSets) {
    // prom-client's zero() replaces a histogram series with an empty one (a reset to a scraper).
    if (isHistogram(metric)) {
      if (hasSeries(metric, labels) !== true) metric.zero(labels)
    } else incSeries(metric, labels, 0)
  }
}

/**
 * Every combination of the given label values, for {@link zeroSeries}.
 *
 * @example
 * ```ts
 * labelProduct({ queue: ['emails', 'sms'], outcome: ['ok', 'failed'] }) // [{ queue: 'emails', outcome: 'ok' }, … 4 sets]
 * ```
 */
export function labelProduct<K extends string>(dimensions: Record<K, readonly string[]>): Record<K, string>[] {
  let sets: Record<string, string>[] = [{}]
  for (const [name, values] of Object.entries(dimensions) as [K, readonly string[]][]) {
    sets = sets.flatMap((set) => values.map((value) => ({ ...set, [name]: value })))
  }
  return sets as Record<K, string>[]
}
