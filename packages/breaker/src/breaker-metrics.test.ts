import { cpSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { AggregatorRegistry, Counter, Registry } from 'prom-client'
import { afterAll, describe, expect, it } from 'vitest'
import { Breaker } from './breaker.js'

const fail = async (): Promise<never> => {
  throw new Error('upstream down')
}

/** The value of one series in `registry`, as a scrape reads it (collectors run). */
async function value(
  registry: Pick<Registry, 'getSingleMetric'>,
  name: string,
  labels: Record<string, string>,
): Promise<number | undefined> {
  const data = await registry.getSingleMetric(name)?.get()
  return data?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value
}

describe('breaker metrics in a cluster (prom-client AggregatorRegistry)', () => {
  it('serves the threshold as configured, the worst failure ratio of the workers, and the workers in each state', async () => {
    // Two workers with breaker "inv": 1 failure in 2 calls on one, 1 in 4 on the other.
    const workers = await Promise.all(
      [1, 3].map(async (successes) => {
        const registry = new Registry()
        const b = new Breaker({ name: 'inv', registry, errorThresholdPercentage: 50, volumeThreshold: 100 })
        for (let i = 0; i < successes; i++) await b.execute(async () => 'ok')
        await b.execute(fail).catch(() => undefined)
        return { registry, b }
      }),
    )
    const cluster = AggregatorRegistry.aggregate(await Promise.all(workers.map(({ registry }) => registry.getMetricsAsJSON())))
    expect(await value(cluster, 'ballast_breaker_failure_threshold_ratio', { breaker: 'inv' })).toBe(0.5)
    expect(await value(cluster, 'ballast_breaker_failure_ratio', { breaker: 'inv' })).toBe(0.5)
    expect(await value(cluster, 'ballast_breaker_state', { breaker: 'inv', state: 'closed' })).toBe(2)
    expect(await value(cluster, 'ballast_breaker_calls_total', { breaker: 'inv', outcome: 'success' })).toBe(4)
    for (const { b } of workers) b[Symbol.dispose]()
  })
})

describe('breaker metrics an application made with exemplars (registered before the breaker, which adopts them)', () => {
  it('counts every event into its labelled series, none into an unlabelled one', async () => {
    // prom-client's typings give Registry no constructor argument; it takes the content type.
    const registry = new (Registry as unknown as new (type: string) => Registry)(Registry.OPENMETRICS_CONTENT_TYPE)
    const families = { calls_total: 'outcome', rejected_calls_total: 'reason', transitions_total: 'state', fallbacks_total: 'result' }
    for (const [name, label] of Object.entries(families)) {
      new Counter({
        name: `ballast_breaker_${name}`,
        help: 'h',
        labelNames: ['breaker', label],
        enableExemplars: true,
        registers: [registry],
      })
    }
    new Counter({ name: 'ballast_breaker_retries_total', help: 'h', labelNames: ['breaker'], enableExemplars: true, registers: [registry] })
    const b = new Breaker({ name: 'inv', registry, volumeThreshold: 2, errorThresholdPercentage: 1, retry: { attempts: 1, delay: 1 } })
    await b.execute(fail).catch(() => undefined) // fails, is retried, fails again: open
    await b.execute(async () => 'never runs', { fallback: () => 'cached' })
    const text = await registry.metrics()
    expect(text).toContain('ballast_breaker_retries_total{breaker="inv"} 1')
    expect(text).toContain('ballast_breaker_transitions_total{breaker="inv",state="open"} 1')
    expect(text).toContain('ballast_breaker_rejected_calls_total{breaker="inv",reason="open"} 1')
    expect(text).toContain('ballast_breaker_fallbacks_total{breaker="inv",result="success"} 1')
    expect(text).not.toMatch(/^ballast_breaker_\w+_total \d/m)
    b[Symbol.dispose]()
  })
})

describe('two installed copies of the package on one registry', () => {
  // A duplicate in node_modules: the same code as another module instance, sharing core and prom-client.
  const copyDir = fileURLToPath(new URL('../node_modules/.second-copy/', import.meta.url))
  cpSync(fileURLToPath(new URL('../dist/', import.meta.url)), copyDir, { recursive: true })
  afterAll(() => rmSync(copyDir, { recursive: true, force: true }))

  it("disposing one copy's breaker keeps the series of the other copy's live breaker of the same name; the last removes them", async () => {
    const other = (await import(/* @vite-ignore */ `${copyDir}index.js`)) as { Breaker: typeof Breaker }
    expect(other.Breaker).not.toBe(Breaker)
    const registry = new Registry()
    const mine = new Breaker({ name: 'inv', registry, errorThresholdPercentage: 40 })
    const theirs = new other.Breaker({ name: 'inv', registry, errorThresholdPercentage: 40 })
    mine[Symbol.dispose]()
    await theirs.execute(async () => 'ok')
    expect(await value(registry, 'ballast_breaker_calls_total', { breaker: 'inv', outcome: 'success' })).toBe(1)
    expect(await value(registry, 'ballast_breaker_calls_total', { breaker: 'inv', outcome: 'failure' })).toBe(0)
    expect(await value(registry, 'ballast_breaker_failure_threshold_ratio', { breaker: 'inv' })).toBe(0.4)
    expect(await value(registry, 'ballast_breaker_transitions_total', { breaker: 'inv', state: 'open' })).toBe(0)
    theirs[Symbol.dispose]()
    expect(await registry.metrics()).not.toContain('breaker="inv"')
  })
})

describe('breaker metrics after the registry is reset (registry.resetMetrics(), as a push or a test does)', () => {
  it('serves the state, ratio and threshold gauges again at the next scrape', async () => {
    const registry = new Registry()
    const b = new Breaker({ name: 'inv', registry, errorThresholdPercentage: 40 })
    registry.resetMetrics()
    await b.execute(async () => 'ok')
    const text = await registry.metrics()
    expect(text).toContain('ballast_breaker_calls_total{breaker="inv",outcome="success"} 1')
    expect(text).toContain('ballast_breaker_state{breaker="inv",state="closed"} 1')
    expect(text).toContain('ballast_breaker_failure_ratio{breaker="inv"} 0')
    expect(text).toContain('ballast_breaker_failure_threshold_ratio{breaker="inv"} 0.4')
    b[Symbol.dispose]()
  })
})
