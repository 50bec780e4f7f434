import { Counter, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { FastCounter, FastHistogram, incSeries, observeSeries } from './fast-series.js'
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

  it('incSeries and observeSeries count into the labelled series of either kind of metric', async () => {
    const registry = openMetricsRegistry()
    for (const enableExemplars of [true, false]) {
      const name = enableExemplars ? 'ex' : 'plain'
      const c = new Counter({ name, help: 'h', labelNames: ['o'], enableExemplars, registers: [registry] })
      const h = new Histogram({
        name: `${name}_seconds`,
        help: 'h',
        labelNames: ['o'],
        buckets: [1],
        enableExemplars,
        registers: [registry],
      })
      incSeries(c, { o: 'ok' })
      incSeries(c, { o: 'ok' }, 2)
      observeSeries(h, { o: 'ok' }, 0.5)
    }
    const text = await registry.metrics()
    for (const name of ['ex', 'plain']) {
      expect(text).toContain(`${name}_total{o="ok"} 3`)
      expect(text).toContain(`${name}_seconds_count{o="ok"} 1`)
      expect(text).not.toMatch(new RegExp(`^${name}(_total|_seconds_count) \\d`, 'm'))
    }
  })
})
