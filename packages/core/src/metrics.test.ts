import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { promisify } from 'node:util'
import express from 'express'
import { AggregatorRegistry, register as globalRegistry, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { addCollector, counter, gauge, histogram, labelProduct, metricsTarget, zeroSeries } from './metrics.js'
import { metricsHandler } from './metrics-handler.js'

async function serve(app: express.Express) {
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

describe('metricsTarget', () => {
  it('defaults to the global registry and the ballast_ prefix', () => {
    const target = metricsTarget('Thing')
    expect(target.registry).toBe(globalRegistry)
    expect(target.prefix).toBe('ballast_')
  })

  it('rejects a registry that is not one, and invalid prefixes', () => {
    expect(() => metricsTarget('Breaker', { registry: {} as Registry })).toThrow(
      /Breaker: option "registry" must be a prom-client Registry, got \{\}/,
    )
    expect(() => metricsTarget('Breaker', { prefix: '9bad' })).toThrow(RangeError)
    expect(() => metricsTarget('Breaker', { prefix: 'has space_' })).toThrow(/option "prefix"/)
    expect(metricsTarget('Breaker', { prefix: '' }).prefix).toBe('')
  })
})

describe('get-or-create metrics', () => {
  it('shares a metric registered twice instead of throwing', async () => {
    const registry = new Registry()
    const target = metricsTarget('T', { registry })
    const spec = { name: 'things_total', help: 'Things.', labelNames: ['kind'] as const }
    const a = counter(target, spec)
    const b = counter(target, spec)
    expect(b).toBe(a)
    a.inc({ kind: 'x' })
    b.inc({ kind: 'x' })
    expect((await registry.getSingleMetricAsString('ballast_things_total')).trim().split('\n').at(-1)).toBe(
      'ballast_things_total{kind="x"} 2',
    )
  })

  it('refuses a clash with a different metric under the same name', () => {
    const registry = new Registry()
    const target = metricsTarget('T', { registry })
    counter(target, { name: 'clash', help: 'c', labelNames: ['a'] })
    expect(() => gauge(target, { name: 'clash', help: 'c', labelNames: ['a'] })).toThrow(/already registered as a counter/)
    expect(() => counter(target, { name: 'clash', help: 'c', labelNames: ['b'] })).toThrow(/use another "prefix" or "registry"/)
  })

  it('sends everything to a custom registry and nothing to the global one', async () => {
    const before = (await globalRegistry.getMetricsAsJSON()).length
    const registry = new Registry()
    const target = metricsTarget('T', { registry, prefix: 'custom_' })
    counter(target, { name: 'a_total', help: 'a', labelNames: [] }).inc()
    histogram(target, { name: 'b_seconds', help: 'b', labelNames: [], buckets: [0.1, 1] }).observe(0.5)
    gauge(target, { name: 'c', help: 'c', labelNames: [] }).set(1)
    expect((await registry.getMetricsAsJSON()).map((metric) => metric.name).sort()).toEqual([
      'custom_a_total',
      'custom_b_seconds',
      'custom_c',
    ])
    expect((await globalRegistry.getMetricsAsJSON()).length).toBe(before)
  })

  it('creates label sets at zero', async () => {
    const registry = new Registry()
    const target = metricsTarget('T', { registry })
    const calls = counter(target, { name: 'calls_total', help: 'Calls.', labelNames: ['breaker', 'outcome'] })
    const latency = histogram(target, { name: 'latency_seconds', help: 'L.', labelNames: ['outcome'], buckets: [1] })
    zeroSeries(calls, labelProduct({ breaker: ['inventory'], outcome: ['success', 'failure'] }))
    zeroSeries(latency, labelProduct({ outcome: ['success'] }))
    const text = await registry.metrics()
    expect(text).toContain('ballast_calls_total{breaker="inventory",outcome="success"} 0')
    expect(text).toContain('ballast_calls_total{breaker="inventory",outcome="failure"} 0')
    expect(text).toContain('ballast_latency_seconds_count{outcome="success"} 0')
  })

  it('zeroing a label set that holds values keeps them: a second instance or another method resets nothing', async () => {
    const registry = new Registry()
    const target = metricsTarget('T', { registry })
    const calls = counter(target, { name: 'calls_total', help: 'Calls.', labelNames: ['outcome'] })
    const latency = histogram(target, { name: 'latency_seconds', help: 'L.', labelNames: ['outcome'], buckets: [1] })
    zeroSeries(calls, [{ outcome: 'success' }])
    zeroSeries(latency, [{ outcome: 'success' }])
    calls.inc({ outcome: 'success' }, 3)
    latency.observe({ outcome: 'success' }, 0.5)
    latency.observe({ outcome: 'success' }, 2)
    zeroSeries(calls, labelProduct({ outcome: ['success', 'failure'] }))
    zeroSeries(latency, labelProduct({ outcome: ['success', 'failure'] }))
    const text = await registry.metrics()
    expect(text).toContain('ballast_calls_total{outcome="success"} 3')
    expect(text).toContain('ballast_calls_total{outcome="failure"} 0')
    expect(text).toContain('ballast_latency_seconds_count{outcome="success"} 2')
    expect(text).toContain('ballast_latency_seconds_bucket{le="1",outcome="success"} 1')
    expect(text).toContain('ballast_latency_seconds_sum{outcome="success"} 2.5')
    expect(text).toContain('ballast_latency_seconds_count{outcome="failure"} 0')
  })

  it('zeroes the series of metrics made by another copy of prom-client (a duplicate install sharing the registry)', async () => {
    const require = createRequire(import.meta.url)
    for (const path of Object.keys(require.cache)) if (path.includes(`${sep}prom-client${sep}`)) delete require.cache[path]
    const other = require('prom-client') as typeof import('prom-client')
    expect(other.Histogram).not.toBe(Histogram)
    const registry = new other.Registry()
    const foreignLatency = new other.Histogram({
      name: 'ballast_latency_seconds',
      help: 'L.',
      labelNames: ['outcome'],
      buckets: [1],
      registers: [registry],
    })
    const foreignCalls = new other.Counter({ name: 'ballast_calls_total', help: 'C.', labelNames: ['outcome'], registers: [registry] })
    foreignLatency.observe({ outcome: 'success' }, 0.5)
    const target = metricsTarget('T', { registry: registry as unknown as Registry })
    const latency = histogram(target, { name: 'latency_seconds', help: 'L.', labelNames: ['outcome'], buckets: [1] })
    const calls = counter(target, { name: 'calls_total', help: 'C.', labelNames: ['outcome'] })
    expect(latency).toBe(foreignLatency)
    expect(calls).toBe(foreignCalls)
    zeroSeries(latency, labelProduct({ outcome: ['success', 'failure'] }))
    zeroSeries(calls, labelProduct({ outcome: ['success', 'failure'] }))
    const text = await registry.metrics()
    expect(text).toContain('ballast_latency_seconds_count{outcome="success"} 1')
    expect(text).toContain('ballast_latency_seconds_count{outcome="failure"} 0')
    expect(text).toContain('ballast_calls_total{outcome="failure"} 0')
  })

  it('keeps the scrape working when a collector throws, and runs the others', async () => {
    const registry = new Registry()
    const target = metricsTarget('T', { registry })
    const state = gauge(target, { name: 'state', help: 'S.', labelNames: ['breaker'] })
    const removeBroken = addCollector(state, () => {
      throw new Error('collector failed')
    })
    const removeGood = addCollector(state, () => state.set({ breaker: 'b' }, 1))
    const failing = gauge(target, {
      name: 'own_collect',
      help: 'O.',
      labelNames: [],
      collect() {
        throw new Error('boom')
      },
    })
    failing.set(3)
    const text = await registry.metrics()
    expect(text).toContain('ballast_state{breaker="b"} 1')
    expect(text).toContain('ballast_own_collect 3')
    removeBroken()
    removeGood()
    state.reset()
    expect(await registry.metrics()).not.toContain('ballast_state{breaker="b"}')
  })
})

describe('gauge aggregator (prom-client cluster mode)', () => {
  // What AggregatorRegistry.clusterMetrics() does with the answers of its workers.
  async function aggregated(workers: Registry[], name: string): Promise<number | undefined> {
    const merged = AggregatorRegistry.aggregate(await Promise.all(workers.map((worker) => worker.getMetricsAsJSON())))
    return (await merged.getSingleMetric(name)?.get())?.values[0]?.value
  }

  it('combines the workers with the gauge its aggregator, and sums by default', async () => {
    const workers = [new Registry(), new Registry()]
    workers.forEach((registry, i) => {
      const target = metricsTarget('T', { registry })
      gauge(target, { name: 'oldest_timestamp_seconds', help: 'h', labelNames: [], aggregator: 'min' }).set(100 + i)
      gauge(target, { name: 'depth', help: 'h', labelNames: [] }).set(3)
    })
    expect(await aggregated(workers, 'ballast_oldest_timestamp_seconds')).toBe(100)
    expect(await aggregated(workers, 'ballast_depth')).toBe(6)
  })

  it('refuses an aggregator prom-client does not know', () => {
    const target = metricsTarget('T', { registry: new Registry() })
    expect(() => gauge(target, { name: 'g', help: 'h', labelNames: [], aggregator: 'median' as never })).toThrow(
      new RangeError(`gauge: option "aggregator" must be one of 'sum', 'first', 'min', 'max', 'average', 'omit', got 'median'`),
    )
  })
})

describe('importing registers nothing', () => {
  it('leaves a fresh global registry empty', async () => {
    const { execPath } = process
    const script = `
      import('prom-client').then(async ({ register }) => {
        await import(${JSON.stringify(new URL('./index.ts', import.meta.url).href.replace('/src/index.ts', '/dist/index.js'))})
        process.stdout.write(String((await register.getMetricsAsJSON()).length))
      })`
    const { stdout } = await promisify(execFile)(execPath, ['--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url).pathname,
    })
    expect(stdout).toBe('0')
  })
})

describe('metricsHandler', () => {
  it('refuses a registry that cannot render an exposition, at construction', () => {
    expect(() => metricsHandler('x' as never)).toThrow(new TypeError(`metricsHandler: "registry" must be a prom-client Registry, got 'x'`))
    expect(() => metricsHandler({} as never)).toThrow(TypeError)
  })

  it('serves the exposition with the registry content type, also for OpenMetrics', async () => {
    const registry = new Registry()
    counter(metricsTarget('T', { registry }), { name: 'hits_total', help: 'Hits.', labelNames: [] }).inc()
    const open = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>()
    open.setContentType(Registry.OPENMETRICS_CONTENT_TYPE)
    const app = express()
    app.get('/metrics', metricsHandler(registry))
    app.get('/open', metricsHandler(open))
    const { url, close } = await serve(app)
    try {
      const response = await fetch(`${url}/metrics`)
      expect(response.status).toBe(200)
      expect(response.headers.get('content-type')).toBe(registry.contentType)
      expect(await response.text()).toContain('ballast_hits_total 1')
      const openResponse = await fetch(`${url}/open`)
      expect(openResponse.headers.get('content-type')).toBe(open.contentType)
      await openResponse.text()
    } finally {
      await close()
    }
  })

  it('serves several registries merged at every scrape, with the metrics created after it was mounted', async () => {
    const [own, jobs] = [new Registry(), new Registry()]
    counter(metricsTarget('T', { registry: jobs }), { name: 'jobs_total', help: 'Jobs.', labelNames: [] }).inc()
    const app = express()
    // Mounted first, as the README's composition does; the component registers its metrics later.
    app.get('/metrics', metricsHandler([own, jobs]))
    counter(metricsTarget('T', { registry: own }), { name: 'late_total', help: 'Created after mounting.', labelNames: [] }).inc(2)
    const { url, close } = await serve(app)
    try {
      const response = await fetch(`${url}/metrics`)
      expect(response.headers.get('content-type')).toBe(own.contentType)
      const text = await response.text()
      expect(text).toContain('ballast_late_total 2')
      expect(text).toContain('ballast_jobs_total 1')
    } finally {
      await close()
    }
  })

  it('refuses an array that is not of registries of one content type, naming the member', () => {
    expect(() => metricsHandler([new Registry(), 42] as never)).toThrow(
      new TypeError('metricsHandler: "registry[1]" must be a prom-client Registry, got 42'),
    )
    expect(() => metricsHandler([])).toThrow(new RangeError('metricsHandler: "registry" must hold at least one Registry, got []'))
    const open = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>()
    open.setContentType(Registry.OPENMETRICS_CONTENT_TYPE)
    expect(() => metricsHandler([new Registry(), open] as never)).toThrow(/"registry\[1\]" must have the content type of "registry\[0\]"/)
  })

  it('answers 500 when the registry fails instead of hanging', async () => {
    const registry = new Registry()
    registry.metrics = () => Promise.reject(new Error('exploded'))
    const app = express()
    app.get('/metrics', metricsHandler(registry))
    const { url, close } = await serve(app)
    try {
      const response = await fetch(`${url}/metrics`)
      expect(response.status).toBe(500)
      expect(await response.text()).toContain('exploded')
    } finally {
      await close()
    }
  })

  it('produces an exposition promtool accepts', async () => {
    const registry = new Registry()
    const target = metricsTarget('T', { registry })
    const requests = counter(target, { name: 'demo_requests_total', help: 'Requests handled.', labelNames: ['route', 'method'] })
    zeroSeries(requests, labelProduct({ route: ['/orders/:id', '<unmatched>'], method: ['GET', '_OTHER'] }))
    histogram(target, { name: 'demo_duration_seconds', help: 'Duration.', labelNames: ['route'], buckets: [0.01, 0.1, 1] }).observe(
      { route: '/orders/:id' },
      0.05,
    )
    const state = gauge(target, { name: 'demo_state', help: 'State.', labelNames: ['state'] })
    addCollector(state, () => state.set({ state: 'closed' }, 1))
    const dir = await mkdtemp(join(tmpdir(), 'ballast-promtool-'))
    try {
      const file = join(dir, 'metrics.txt')
      await writeFile(file, await registry.metrics())
      const { stdout, stderr } = await promisify(execFile)('sh', ['-c', `promtool check metrics < ${file}`])
      expect(stdout + stderr).toBe('')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
