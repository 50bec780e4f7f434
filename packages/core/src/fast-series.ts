import type { Counter, Histogram } from 'prom-client'
import { propertyKey } from './property-key.js'

// prom-client hashes the label object on every `inc`/`observe` (a sort, a join and
// a validation), and its `labels()` children do the same on each call. When a
// component's label sets are known up front, these helpers find the series entry
// once and update it in place. The entry is re-checked on every call; when
// prom-client's storage is not what is expected (another version, `reset()`,
// `remove()`), the public API is used instead and the entry found again, so a
// value is never lost.

interface Entry {
  labels?: Record<string, string | number>
  value?: number
  sum?: number
  count?: number
  bucketValues?: Record<string, number>
}

interface Stored {
  hashMap?: Record<string, Entry>
  upperBounds?: readonly number[]
  sortedLabelNames?: readonly string[]
}

function sameLabels(a: Record<string, string | number> | undefined, b: Record<string, string>): boolean {
  if (a === undefined) return false
  const keys = Object.keys(b)
  return Object.keys(a).length === keys.length && keys.every((key) => String(a[key]) === b[key])
}

/** prom-client 15's series key: `name:value,` for each label name in sorted order. */
function seriesKey(metric: Stored, labels: Record<string, string>): string | undefined {
  const names = metric.sortedLabelNames
  if (!Array.isArray(names)) return undefined
  let key = ''
  for (const name of names) {
    const value = labels[name]
    if (value !== undefined) key += `${name}:${value},`
  }
  return key
}

function locate(metric: Stored, labels: Record<string, string>): { key: string; entry: Entry } | undefined {
  const map = metric.hashMap
  if (typeof map !== 'object' || map === null) return undefined
  // The direct key first: a scan per new series made creating many keyed
  // breakers quadratic in the number of series.
  const direct = seriesKey(metric, labels)
  const candidate = direct === undefined ? undefined : map[direct]
  if (direct !== undefined && typeof candidate === 'object' && candidate !== null && sameLabels(candidate.labels, labels)) {
    return { key: direct, entry: candidate }
  }
  for (const key of Object.keys(map)) {
    const entry = map[key]
    if (typeof entry === 'object' && entry !== null && sameLabels(entry.labels, labels)) return { key, entry }
  }
  return undefined
}

/**
 * `true` when `metric` holds a series with exactly `labels`, `undefined` when it
 * does not or it cannot tell. Internal to the package.
 */
export function hasSeries(metric: Counter<string> | Histogram<string>, labels: Record<string, string>): true | undefined {
  const stored = metric as unknown as Stored
  const map = stored.hashMap
  if (typeof map !== 'object' || map === null) return undefined
  // By its key only: a scan on every miss (each new series) made creating keyed breakers quadratic.
  const key = seriesKey(stored, labels)
  const entry = key === undefined ? undefined : map[key]
  if (typeof entry === 'object' && entry !== null && sameLabels(entry.labels, labels)) return true
  // A miss proves nothing under another storage layout: the caller creates the series, as it would anyway.
  return undefined
}

// A metric made with `enableExemplars` (on an OpenMetrics registry) takes its labels
// and value in one object; positional arguments would land in the unlabelled series,
// or throw for a histogram (its value is then undefined).
type ExemplarAware = { enableExemplars?: boolean }

/**
 * `counter.inc(labels, value)` that also works on a counter made with
 * `enableExemplars` (one an application registered before ballast adopted it),
 * whose `inc` takes a single object. For label sets not known up front; a hot
 * path with fixed labels uses {@link FastCounter}.
 *
 * @example
 * ```ts
 * incSeries(rejected, { queue: 'emails', reason: 'full' })
 * incSeries(processed, { queue: 'emails' }, batch.length)
 * ```
 */
export function incSeries<L extends string>(metric: Counter<L>, labels: Partial<Record<L, string>>, value = 1): void {
  if ((metric as ExemplarAware).enableExemplars === true) metric.inc({ labels, value } as never)
  else metric.inc(labels, value)
}

/**
 * `histogram.observe(labels, value)` that also works on a histogram made with
 * `enableExemplars`, whose `observe` takes a single object. For label sets not
 * known up front; a hot path with fixed labels uses {@link FastHistogram}.
 *
 * @example
 * ```ts
 * observeSeries(duration, { queue: 'emails', outcome: 'ok' }, seconds)
 * ```
 */
export function observeSeries<L extends string>(metric: Histogram<L>, labels: Partial<Record<L, string>>, value: number): void {
  if ((metric as ExemplarAware).enableExemplars === true) metric.observe({ labels, value } as never)
  else metric.observe(labels, value)
}

/**
 * One series of a prom-client counter, bound at construction (and created at 0
 * there), incremented without hashing its labels: for hot paths whose label
 * sets are known up front. Values stay exactly those the public API would give;
 * after a `reset()` or `remove()` of the metric it falls back to the public API
 * and binds again.
 *
 * @example
 * ```ts
 * const requests = counter(target, { name: 'fetch_requests_total', help: '…', labelNames: ['client', 'status_class'] })
 * const ok = new FastCounter(requests, { client: 'inventory', status_class: '2xx' }) // series exists at 0
 * ok.inc() // per request: no label object, no hashing
 * ```
 */
export class FastCounter {
  readonly #metric: Counter<string>
  readonly #labels: Record<string, string>
  #key: string | undefined = undefined
  #entry: Entry | undefined = undefined

  constructor(metric: Counter<string>, labels: Record<string, string>) {
    this.#metric = metric
    this.#labels = { ...labels }
    this.#locate()
  }

  #locate(): void {
    incSeries(this.#metric, this.#labels, 0)
    const found = locate(this.#metric as unknown as Stored, this.#labels)
    const usable = found !== undefined && typeof found.entry.value === 'number'
    this.#key = usable ? propertyKey(found.key) : undefined
    this.#entry = usable ? found.entry : undefined
  }

  /** Adds 1 to the series. */
  inc(): void {
    const key = this.#key
    if (key !== undefined) {
      const entry = (this.#metric as unknown as Stored).hashMap?.[key]
      if (entry !== undefined && entry === this.#entry) {
        ;(entry.value as number) += 1
        return
      }
    }
    incSeries(this.#metric, this.#labels, 1)
    this.#locate()
  }
}

/**
 * One series of a prom-client histogram, bound at construction (and created at
 * 0 there), observed without hashing its labels. Non-finite values (which
 * prom-client refuses with a TypeError) and a metric whose storage changed
 * (`reset()`, `remove()`) go through the public API.
 *
 * @example
 * ```ts
 * const duration = histogram(target, { name: 'call_duration_seconds', help: '…', labelNames: ['outcome'], buckets: [0.01, 0.1, 1] })
 * const ok = new FastHistogram(duration, { outcome: 'success' })
 * ok.observe(0.042)
 * ```
 */
export class FastHistogram {
  readonly #metric: Histogram<string>
  readonly #labels: Record<string, string>
  #key: string | undefined = undefined
  #entry: Entry | undefined = undefined
  #bounds: readonly number[] = []
  // prom-client keys buckets by the bound's string form; converting a double to
  // a string on every observation would cost more than the rest of it.
  #boundKeys: readonly string[] = []

  constructor(metric: Histogram<string>, labels: Record<string, string>) {
    this.#metric = metric
    this.#labels = { ...labels }
    this.#locate()
  }

  #locate(): void {
    const stored = this.#metric as unknown as Stored
    let existing = locate(stored, this.#labels)
    if (existing === undefined) {
      // Only a missing series is created at 0: after a fallback `observe` the series holds that value.
      this.#metric.zero(this.#labels)
      existing = locate(stored, this.#labels)
    }
    const found = existing
    const bounds = stored.upperBounds
    const usable =
      found !== undefined &&
      Array.isArray(bounds) &&
      typeof found.entry.sum === 'number' &&
      typeof found.entry.count === 'number' &&
      typeof found.entry.bucketValues === 'object' &&
      bounds.every((bound) => typeof found.entry.bucketValues?.[bound] === 'number')
    this.#key = usable ? propertyKey(found.key) : undefined
    this.#entry = usable ? found.entry : undefined
    this.#bounds = usable ? bounds : []
    this.#boundKeys = this.#bounds.map((bound) => propertyKey(String(bound)))
  }

  /** Records one observation (in the metric's unit, seconds for durations). */
  observe(value: number): void {
    const key = this.#key
    if (key !== undefined && Number.isFinite(value)) {
      const entry = (this.#metric as unknown as Stored).hashMap?.[key]
      if (entry !== undefined && entry === this.#entry) {
        ;(entry.sum as number) += value
        ;(entry.count as number) += 1
        const bounds = this.#bounds
        for (let i = 0; i < bounds.length; i++) {
          if (value <= (bounds[i] as number)) {
            const buckets = entry.bucketValues as Record<string, number>
            const bound = this.#boundKeys[i] as string
            buckets[bound] = (buckets[bound] as number) + 1
            break
          }
        }
        return
      }
    }
    observeSeries(this.#metric, this.#labels, value)
    this.#locate()
  }
}
