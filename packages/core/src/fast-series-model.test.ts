import fc from 'fast-check'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { FastCounter, FastHistogram } from './fast-series.js'
import { counter, histogram, metricsTarget } from './metrics.js'

const BUCKETS = [-0.5, 0, 0.1, 1, 10]
const LABELS = [
  { k: 'a', o: 'x' },
  { k: 'b', o: 'y' },
]

type Op =
  | { op: 'inc'; s: number }
  | { op: 'pubInc'; s: number }
  | { op: 'observe'; s: number; v: number }
  | { op: 'reset' }
  | { op: 'resetMetrics' }
  | { op: 'remove'; s: number }
  | { op: 'zero'; s: number }
  | { op: 'rebind'; s: number }

const value = fc.oneof(
  fc.double({ min: -20, max: 20, noNaN: true }),
  fc.constantFrom(
    ...BUCKETS,
    -0,
    1e-300,
    Number.MAX_VALUE,
    -Number.MAX_VALUE,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
  ),
)
const s = fc.nat({ max: LABELS.length - 1 })
const ops = fc.array(
  fc.oneof(
    fc.record({ op: fc.constant('inc' as const), s }),
    fc.record({ op: fc.constant('pubInc' as const), s }),
    fc.record({ op: fc.constant('observe' as const), s, v: value }),
    fc.constant({ op: 'reset' as const }),
    fc.constant({ op: 'resetMetrics' as const }),
    fc.record({ op: fc.constant('remove' as const), s }),
    fc.record({ op: fc.constant('zero' as const), s }),
    fc.record({ op: fc.constant('rebind' as const), s }),
  ),
  { maxLength: 60 },
)

function world(fast: boolean) {
  const registry = new Registry()
  const target = metricsTarget('model', { registry, prefix: '' })
  const c = counter(target, { name: 'c_total', help: 'h', labelNames: ['k', 'o'] })
  const h = histogram(target, { name: 'h_seconds', help: 'h', labelNames: ['k', 'o'], buckets: BUCKETS })
  const bind = () => ({ fc: LABELS.map((l) => new FastCounter(c, l)), fh: LABELS.map((l) => new FastHistogram(h, l)) })
  let bound = bind()
  // The public-API world creates the same series at 0 as the fast constructors do.
  if (!fast) {
    registry.resetMetrics()
    for (const labels of LABELS) {
      c.inc(labels, 0)
      h.zero(labels)
    }
  }
  const apply = (o: Op): unknown => {
    try {
      run(o)
      return 'ok'
    } catch (error) {
      return (error as Error).constructor.name
    }
  }
  const run = (o: Op): unknown => {
    switch (o.op) {
      case 'inc':
        return fast ? (bound.fc[o.s] as FastCounter).inc() : c.inc(LABELS[o.s] as Record<string, string>)
      case 'pubInc':
        return c.inc(LABELS[o.s] as Record<string, string>)
      case 'observe':
        return fast ? (bound.fh[o.s] as FastHistogram).observe(o.v) : h.observe(LABELS[o.s] as Record<string, string>, o.v)
      case 'reset':
        c.reset()
        return h.reset()
      case 'resetMetrics':
        return registry.resetMetrics()
      case 'remove':
        c.remove(LABELS[o.s] as Record<string, string>)
        return h.remove(LABELS[o.s] as Record<string, string>)
      case 'zero':
        return h.zero(LABELS[o.s] as Record<string, string>)
      case 'rebind':
        // a new binding creates the series at 0 when it is missing
        if (fast) {
          bound.fc[o.s] = new FastCounter(c, LABELS[o.s] as Record<string, string>)
          bound.fh[o.s] = new FastHistogram(h, LABELS[o.s] as Record<string, string>)
        } else {
          c.inc(LABELS[o.s] as Record<string, string>, 0)
          if (
            !(h as unknown as { hashMap: Record<string, unknown> }).hashMap[
              `k:${(LABELS[o.s] as Record<string, string>).k},o:${(LABELS[o.s] as Record<string, string>).o},`
            ]
          )
            h.zero(LABELS[o.s] as Record<string, string>)
        }
        return undefined
    }
  }
  return { registry, apply, rebindAll: () => (bound = bind()) }
}

describe('fast series agree with the public API (text exposition)', () => {
  it('random inc/observe/reset/resetMetrics/remove/zero/rebind sequences', async () => {
    await fc.assert(
      fc.asyncProperty(ops, async (sequence) => {
        const fastWorld = world(true)
        const slowWorld = world(false)
        const fastResults = sequence.map((o) => fastWorld.apply(o))
        const slowResults = sequence.map((o) => slowWorld.apply(o))
        expect(fastResults).toEqual(slowResults)
        expect(await fastWorld.registry.metrics()).toBe(await slowWorld.registry.metrics())
      }),
      { numRuns: 500 },
    )
  })
})
