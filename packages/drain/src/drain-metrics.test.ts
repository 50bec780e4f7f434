import { AggregatorRegistry, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { Drain, type DrainOptions } from './drain.js'

const QUIET: DrainOptions = { signals: false, exit: false, logger: false, readinessDelay: 0 }

/** A cluster worker's drain on a registry of its own, stopped when `drained`. */
async function worker(drained: boolean): Promise<{ registry: Registry; drain: Drain }> {
  const registry = new Registry()
  const drain = new Drain({ ...QUIET, registry })
  // A hook that outlives a clock tick, so that every drain has an age above 0.
  drain.onShutdown('tick', () => new Promise<void>((resolve) => setTimeout(resolve, 2)))
  if (drained) await drain.shutdown('test')
  return { registry, drain }
}

/** What AggregatorRegistry.clusterMetrics() serves for a series, from the workers' answers. */
async function clusterValue(
  workers: { registry: Registry }[],
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const cluster = AggregatorRegistry.aggregate(await Promise.all(workers.map(({ registry }) => registry.getMetricsAsJSON())))
  const values = (await cluster.getSingleMetric(name)?.get())?.values ?? []
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value
}

describe('drain metrics in a cluster (prom-client AggregatorRegistry)', () => {
  it('serves the earliest start once every worker drains, and the oldest drain age', async () => {
    const workers = [await worker(true), await worker(true)]
    const [a, b] = workers.map(({ drain }) => drain) as [Drain, Drain]
    expect(await clusterValue(workers, 'ballast_drain_started_timestamp_seconds')).toBe(
      Math.min(a.startedAt ?? Number.NaN, b.startedAt ?? Number.NaN) / 1000,
    )
    expect(await clusterValue(workers, 'ballast_drain_age_seconds')).toBe(Math.max(a.elapsedMs, b.elapsedMs) / 1000)
    for (const { drain } of workers) drain[Symbol.dispose]()
  })

  it('serves no start while a worker still serves, and counts the workers in each state', async () => {
    const workers = [await worker(true), await worker(false)]
    expect(await clusterValue(workers, 'ballast_drain_started_timestamp_seconds')).toBe(0)
    expect(await clusterValue(workers, 'ballast_drain_age_seconds')).toBe((workers[0]?.drain.elapsedMs ?? Number.NaN) / 1000)
    expect(await clusterValue(workers, 'ballast_drain_state', { state: 'serving' })).toBe(1)
    for (const { drain } of workers) drain[Symbol.dispose]()
  })
})
