import fc from 'fast-check'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { FastCounter, FastHistogram } from './fast-series.js'
import { counter, histogram, metricsTarget, zeroSeries } from './metrics.js'

const BUCKETS = [0.001, 0.01, 0.1, 1, 10]

/** The series of `name` with `labels`, as the exposition reports them (value per sample name + le). */
async function samples(registry: Registry, name: string, labels: Record<string, string>): Promise<Record<string, number>> {
  const metric = registry.getSingleMetric(name)
  if (metric === undefined) throw new Error(`no metric ${name}`)
  const { values } = await metric.get()
  const out: Record<string, number> = {}
  for (const value of values) {
    const own = value.labels as Record<string, string | number>
    if (!Object.entries(labels).every(([key, expected]) => own[key] === expected)) continue
    const le = own.le === undefined ? '' : `{le=${own.le}}`
    out[`${(value as { metricName?: string }).metricName ?? name}${le}`] = value.value
  }
  return out
}

function setup() {
  const registry = new Registry()
  const target = metricsTarget('test', { registry, prefix: '' })
  const fastCounter = counter(target, { name: 'fast_total', help: 'h', labelNames: ['client', 'status'] })
  const slowCounter = counter(target, { name: 'slow_total', help: 'h', labelNames: ['client', 'status'] })
  const fastHistogram = histogram(target, { name: 'fast_seconds', help: 'h', labelNames: ['outcome'], buckets: BUCKETS })
  const slowHistogram = histogram(target, { name: 'slow_seconds', help: 'h', labelNames: ['outcome'], buckets: BUCKETS })
  return { registry, fastCounter, slowCounter, fastHistogram, slowHistogram }
}

const rename = (series: Record<string, number>, from: string, to: string) =>
  Object.fromEntries(Object.entries(series).map(([key, value]) => [key.replace(from, to), value]))

describe('FastCounter', () => {
  it('creates its series at 0 and counts exactly like the public API', async () => {
    const { registry, fastCounter, slowCounter } = setup()
    const labels = { client: 'a', status: '2xx' }
    const bound = new FastCounter(fastCounter, labels)
    expect(await samples(registry, 'fast_total', labels)).toEqual({ fast_total: 0 })
    for (let i = 0; i < 1_234; i++) {
      bound.inc()
      slowCounter.inc(labels)
    }
    expect(await samples(registry, 'fast_total', labels)).toEqual({ fast_total: 1_234 })
    expect(rename(await samples(registry, 'fast_total', labels), 'fast', 'slow')).toEqual(await samples(registry, 'slow_total', labels))
  })

  it('keeps counting after reset() and remove(), without losing an increment', async () => {
    const { registry, fastCounter } = setup()
    const labels = { client: 'a', status: '5xx' }
    const bound = new FastCounter(fastCounter, labels)
    bound.inc()
    fastCounter.reset()
    bound.inc()
    bound.inc()
    expect(await samples(registry, 'fast_total', labels)).toEqual({ fast_total: 2 })
    fastCounter.remove(labels)
    bound.inc()
    expect(await samples(registry, 'fast_total', labels)).toEqual({ fast_total: 1 })
  })

  it('does not keep a reference to the caller’s label object', async () => {
    const { registry, fastCounter } = setup()
    const labels = { client: 'a', status: '2xx' }
    const bound = new FastCounter(fastCounter, labels)
    labels.status = '4xx'
    fastCounter.reset()
    bound.inc()
    expect(await samples(registry, 'fast_total', { client: 'a', status: '2xx' })).toEqual({ fast_total: 1 })
  })
})

describe('FastHistogram', () => {
  it('observes exactly like the public API (random values, sum, count and every bucket)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.double({ min: 0, max: 20, noNaN: true }), fc.constantFrom(...BUCKETS))), async (values) => {
        const { registry, fastHistogram, slowHistogram } = setup()
        const labels = { outcome: 'success' }
        const bound = new FastHistogram(fastHistogram, labels)
        slowHistogram.zero(labels)
        for (const value of values) {
          bound.observe(value)
          slowHistogram.observe(labels, value)
        }
        const fast = rename(await samples(registry, 'fast_seconds', labels), 'fast', 'slow')
        expect(fast).toEqual(await samples(registry, 'slow_seconds', labels))
      }),
      { numRuns: 200 },
    )
  })

  it('refuses a non-finite value as the public API does', () => {
    const { fastHistogram, slowHistogram } = setup()
    const bound = new FastHistogram(fastHistogram, { outcome: 'success' })
    for (const value of [Number.POSITIVE_INFINITY, Number.NaN]) {
      const slow = (() => {
        try {
          slowHistogram.observe({ outcome: 'success' }, value)
        } catch (error) {
          return error
        }
        return undefined
      })()
      expect(slow).toBeInstanceOf(TypeError)
      expect(() => bound.observe(value)).toThrow(TypeError)
    }
  })

  it('exists at 0 from construction and survives reset()', async () => {
    const { registry, fastHistogram } = setup()
    const labels = { outcome: 'timeout' }
    const bound = new FastHistogram(fastHistogram, labels)
    const zero = await samples(registry, 'fast_seconds', labels)
    expect(zero.fast_seconds_count).toBe(0)
    expect(zero['fast_seconds_bucket{le=+Inf}']).toBe(0)
    bound.observe(0.05)
    fastHistogram.reset()
    bound.observe(0.5)
    const after = await samples(registry, 'fast_seconds', labels)
    expect(after.fast_seconds_count).toBe(1)
    expect(after.fast_seconds_sum).toBe(0.5)
    expect(after['fast_seconds_bucket{le=0.1}']).toBe(0)
    expect(after['fast_seconds_bucket{le=1}']).toBe(1)
  })
})

/** Counts the scans of every key of a metric's series store (prom-client's hashMap). */
function countScans(metric: object): { count: number } {
  const scans = { count: 0 }
  const stored = metric as { hashMap: Record<string, unknown> }
  stored.hashMap = new Proxy(stored.hashMap, {
    ownKeys(target) {
      scans.count++
      return Reflect.ownKeys(target)
    },
  })
  return scans
}

describe('binding many series', () => {
  it('finds each new series by its key, never by scanning every series (keyed breakers stay linear)', async () => {
    const registry = new Registry()
    const calls = counter(metricsTarget('T', { registry }), { name: 'many_total', help: 'Many.', labelNames: ['breaker', 'outcome'] })
    const scans = countScans(calls)
    const bound = Array.from({ length: 2_000 }, (_, i) => new FastCounter(calls, { breaker: `b${i}`, outcome: 'success' }))
    for (const series of bound) series.inc()
    expect(scans.count).toBe(0)
    const text = await registry.getSingleMetricAsString('ballast_many_total')
    expect(text).toContain('ballast_many_total{breaker="b0",outcome="success"} 1')
    expect(text).toContain('ballast_many_total{breaker="b1999",outcome="success"} 1')
  })

  it('zeroSeries tells a new histogram series from an existing one by its key, never by scanning every series', async () => {
    const registry = new Registry()
    const duration = histogram(metricsTarget('T', { registry }), {
      name: 'many_seconds',
      help: 'Many.',
      labelNames: ['breaker', 'outcome'],
      buckets: [1],
    })
    const scans = countScans(duration)
    for (let i = 0; i < 2_000; i++) zeroSeries(duration, [{ breaker: `b${i}`, outcome: 'success' }])
    expect(scans.count).toBe(0)
    const text = await registry.getSingleMetricAsString('ballast_many_seconds')
    expect(text).toContain('ballast_many_seconds_count{breaker="b1999",outcome="success"} 0')
  })
})
