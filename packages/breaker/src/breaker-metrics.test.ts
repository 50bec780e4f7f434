import { AggregatorRegistry, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
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
