import { Counter, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { FastCounter, FastHistogram } from './fast-series.js'
import { zeroSeries } from './metrics.js'

// prom-client's typings give Registry no constructor argument; it takes the content type.
const openMetricsRegistry = () => new (Registry as unknown as new (type: string) => Registry)(Registry.OPENMETRICS_CONTENT_TYPE)

describe('fast series on exemplar-enabled metrics (OpenMetrics registry)', () => {
  it('FastCounter counts into its own series, like counter.inc({ labels })', async () => {
    const registry = openMetricsRegistry()
    const c = new Counter({ name: 'ex', help: 'h', labelNames: ['o'], enableExemplars: true, registers: [registry] })
    new FastCounter(c, { o: 'ok' }).inc()
    const text = await registry.metrics()
    expect(text).toContain('ex_total{o="ok"} 1')
    expect(text).not.toMatch(/^ex_total \d/m)
  })

  it('zeroSeries creates the labelled counter series at 0 and adds nothing anywhere', async () => {
    const registry = openMetricsRegistry()
    const c = new Counter({ name: 'ex', help: 'h', labelNames: ['o'], enableExemplars: true, registers: [registry] })
    zeroSeries(c, [{ o: 'ok' }, { o: 'failed' }])
    const text = await registry.metrics()
    expect(text).toContain('ex_total{o="ok"} 0')
    expect(text).toContain('ex_total{o="failed"} 0')
    expect(text).not.toMatch(/^ex_total \d/m)
  })

  it('FastHistogram keeps observing after reset()', () => {
    const registry = openMetricsRegistry()
    const h = new Histogram({
      name: 'ex_seconds',
      help: 'h',
      labelNames: ['o'],
      buckets: [1],
      enableExemplars: true,
      registers: [registry],
    })
    const bound = new FastHistogram(h, { o: 'ok' })
    h.reset()
    expect(() => bound.observe(0.5)).not.toThrow()
  })
})
