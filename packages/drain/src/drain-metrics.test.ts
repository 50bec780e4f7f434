import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client'
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

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)))
}

/** The status of a GET on a connection of its own. */
function statusOf(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      })
      .on('error', reject)
  })
}

describe('drain metrics an application made with exemplars (registered before the drain, which adopts them)', () => {
  it('counts rejections, closed connections and hooks into their own series, and creates the rejections at 0', async () => {
    // prom-client's typings give Registry no constructor argument; it takes the content type.
    const registry = new (Registry as unknown as new (type: string) => Registry)(Registry.OPENMETRICS_CONTENT_TYPE)
    const exemplars = { enableExemplars: true, help: 'h', registers: [registry] }
    new Counter({ name: 'ballast_drain_rejected_requests_total', labelNames: [], ...exemplars })
    new Counter({ name: 'ballast_drain_closed_connections_total', labelNames: ['reason'], ...exemplars })
    new Histogram({ name: 'ballast_drain_hook_duration_seconds', labelNames: ['hook', 'outcome'], buckets: [0.1, 1], ...exemplars })
    const drain = new Drain({ ...QUIET, registry })
    expect(await registry.metrics()).toContain('ballast_drain_rejected_requests_total 0\n')
    const application = express()
    application.use(drain.middleware())
    application.get('/fast', (_req, res) => {
      res.json({ ok: true })
    })
    // The last server attached (the metrics server) answers through the hooks, with the middleware's 503.
    const [main, last] = [http.createServer(application), http.createServer(application)]
    drain.attach(main).attach(last)
    const [, port] = await Promise.all([main, last].map((server) => listen(server)))
    let duringHook: number | undefined
    drain.onShutdown('probe', async () => {
      duringHook = await statusOf(port ?? 0, '/fast')
    })
    expect((await drain.shutdown('test')).outcome).toBe('ok')
    expect(duringHook).toBe(503)
    const text = await registry.metrics()
    expect(text).toContain('ballast_drain_rejected_requests_total 1\n')
    expect(text).toContain('ballast_drain_closed_connections_total{reason="after_response"} 1\n')
    expect(text).toContain('ballast_drain_hook_duration_seconds_count{hook="probe",outcome="ok"} 1\n')
    expect(text).not.toMatch(/^ballast_drain_(closed_connections_total|hook_duration_seconds_count) \d/m)
    drain[Symbol.dispose]()
  })
})
