// Micro-benchmarks, ns per call, each group with a baseline measured in the same
// run: (1) Breaker.execute vs opossum `fire` (default options), opossum +
// opossum-prometheus and cockatiel; (2) withDeadline vs p-timeout and
// AbortSignal.timeout; (3) the cost of one metric observation.
//
//   node --experimental-strip-types --expose-gc benchmarks/micro.ts
//
// Bounded: 5 interleaved rounds × 16 subjects, a fresh process each (~1 s each),
// every loop a fixed number of calls. The work is an already resolved promise, so
// what is measured is the wrapper.

import { createRequire } from 'node:module'
import { Breaker } from '@ballast/breaker'
import { metricsTarget } from '@ballast/core'
import { Deadline, DeadlineMetrics, withDeadline } from '@ballast/deadline'
import { ConsecutiveBreaker, circuitBreaker, handleAll } from 'cockatiel'
import pTimeout from 'p-timeout'
import { Counter, Histogram, Registry } from 'prom-client'
import { type MicroSubject, runMicro, runMicroChild } from './_lib/micro.ts'
import { QUICK, writeResult } from './_lib/results.ts'
import { describeContext, formatSummary, runContext, summarize, table } from './_lib/stats.ts'

const require = createRequire(import.meta.url)
type Fire = { fire(): Promise<unknown>; shutdown(): void }
const CircuitBreaker = require('opossum') as new (action: () => Promise<number>, options?: object) => Fire
const PrometheusMetrics = require('opossum-prometheus') as new (options: object) => { clear(): void }

const ROUNDS = QUICK ? 2 : 5
const ASYNC = QUICK ? { warmup: 2_000, calls: 10_000 } : { warmup: 30_000, calls: 100_000 }
const SYNC = QUICK ? { warmup: 10_000, calls: 50_000 } : { warmup: 200_000, calls: 1_000_000 }

const work = (): Promise<number> => Promise.resolve(1)
const workWithSignal = (signal: AbortSignal): Promise<number> => Promise.resolve(signal.aborted ? 0 : 1)

interface Group {
  readonly id: string
  readonly title: string
  readonly baseline: string
  readonly subjects: readonly MicroSubject[]
  readonly sync?: boolean
  /** The ballast subject and its target, in ns or as a ratio to the baseline. */
  readonly target?: { subject: string; maxNs?: number; maxRatio?: number; text: string }
}

const groups: Group[] = [
  {
    id: 'breaker',
    title: 'Circuit breaker: one call through the breaker (ns/call)',
    baseline: 'opossum fire (defaults)',
    target: { subject: 'ballast Breaker.execute (metrics on)', maxRatio: 1, text: 'at most opossum fire (defaults)' },
    subjects: [
      {
        name: 'opossum fire (defaults)',
        make() {
          const circuit = new CircuitBreaker(work)
          return { call: () => circuit.fire(), dispose: () => circuit.shutdown() }
        },
      },
      {
        name: 'opossum + opossum-prometheus',
        make() {
          const circuit = new CircuitBreaker(work)
          const metrics = new PrometheusMetrics({ circuits: [circuit], registry: new Registry() })
          return {
            call: () => circuit.fire(),
            dispose: () => {
              metrics.clear()
              circuit.shutdown()
            },
          }
        },
      },
      {
        name: 'cockatiel circuitBreaker',
        make() {
          const policy = circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) })
          return { call: () => policy.execute(work) }
        },
      },
      {
        name: 'ballast Breaker.execute (metrics on)',
        make() {
          const breaker = new Breaker({ name: 'bench', registry: new Registry() })
          return { call: () => breaker.execute(work), dispose: () => breaker[Symbol.dispose]() }
        },
      },
    ],
  },
  {
    id: 'deadline',
    title: 'Promise deadline: one call with a 1 s limit (ns/call)',
    baseline: 'p-timeout',
    target: { subject: 'withDeadline (root)', maxNs: 1_000, text: 'under 1 µs per call' },
    subjects: [
      { name: 'bare await (no limit)', make: () => ({ call: work }) },
      { name: 'withDeadline (root)', make: () => ({ call: () => withDeadline(1_000, workWithSignal) }) },
      {
        name: 'withDeadline (child of a request deadline)',
        make() {
          const request = Deadline.after(3_600_000)
          return {
            call: () => withDeadline(1_000, workWithSignal),
            scope: (fn) => request.run(fn),
            dispose: () => request[Symbol.dispose](),
          }
        },
      },
      { name: 'p-timeout', make: () => ({ call: () => pTimeout(work(), { milliseconds: 1_000 }) }) },
      { name: 'AbortSignal.timeout', make: () => ({ call: () => workWithSignal(AbortSignal.timeout(1_000)) }) },
    ],
  },
  {
    id: 'metrics',
    title: 'Metric observation: cost per call, synchronous (ns/call)',
    baseline: 'prom-client counter.inc(labels)',
    sync: true,
    subjects: [
      {
        name: 'prom-client counter.inc(labels)',
        make() {
          const counter = new Counter({ name: 'c', help: 'c', labelNames: ['route', 'method'], registers: [new Registry()] })
          const labels = { route: '/orders/:id', method: 'GET' }
          return { sync: true, call: () => counter.inc(labels) }
        },
      },
      {
        name: 'prom-client counter child inc()',
        make() {
          const counter = new Counter({ name: 'c', help: 'c', labelNames: ['route', 'method'], registers: [new Registry()] })
          const child = counter.labels({ route: '/orders/:id', method: 'GET' })
          return { sync: true, call: () => child.inc() }
        },
      },
      {
        name: 'prom-client histogram.observe(labels, v)',
        make() {
          const histogram = new Histogram({ name: 'h', help: 'h', labelNames: ['route', 'source'], registers: [new Registry()] })
          const labels = { route: '/orders/:id', source: 'default' }
          return { sync: true, call: () => histogram.observe(labels, 0.5) }
        },
      },
      {
        name: 'prom-client histogram child observe(v)',
        make() {
          const histogram = new Histogram({ name: 'h', help: 'h', labelNames: ['route', 'source'], registers: [new Registry()] })
          const child = histogram.labels({ route: '/orders/:id', source: 'default' })
          return { sync: true, call: () => child.observe(0.5) }
        },
      },
      {
        name: 'ballast deadline() per-request metrics',
        make() {
          const metrics = new DeadlineMetrics(metricsTarget('bench', { registry: new Registry() }))
          // What the middleware does when a response closes: find the route's series, count, observe the budget.
          const req = { method: 'GET', baseUrl: '', route: { path: '/orders/:id' } }
          return { sync: true, call: () => metrics.seriesOf(req).finished(2_000, false) }
        },
      },
    ],
  },
]

const subjectsByName = new Map(groups.flatMap((group) => group.subjects.map((subject) => [subject.name, { subject, group }] as const)))

async function main(): Promise<void> {
  const childIndex = process.argv.indexOf('--child')
  if (childIndex !== -1) {
    const found = subjectsByName.get(process.argv[childIndex + 1] as string)
    if (found === undefined) throw new Error(`unknown subject ${process.argv[childIndex + 1]}`)
    await runMicroChild(found.subject, found.group.sync === true ? SYNC : ASYNC)
    return
  }
  const context = runContext()
  const started = performance.now()
  const output: Record<string, unknown>[] = []
  console.log(describeContext(context))
  for (const group of groups) {
    const names = group.subjects.map((subject) => subject.name)
    const results = await runMicro(import.meta.filename, names, ROUNDS, (name) => ['--child', name])
    const baseline = results.get(group.baseline)?.samples ?? []
    const rows = names.map((name) => {
      const samples = results.get(name)?.samples ?? []
      // Ratio per round against the baseline of the same round, then summarised.
      const ratios = summarize(samples.map((ns, round) => ns / (baseline[round] as number)))
      return { name, ns: summarize(samples), ratio: ratios }
    })
    let verdict: string | undefined
    if (group.target !== undefined) {
      const row = rows.find((r) => r.name === group.target?.subject)
      if (row !== undefined) {
        const met = group.target.maxNs !== undefined ? row.ns.median < group.target.maxNs : row.ratio.median <= (group.target.maxRatio ?? 1)
        verdict = `${met ? 'MET' : 'MISSED'}: ${row.name} ${row.ns.median.toFixed(0)} ns, target ${group.target.text}`
      }
    }
    const calls = group.sync === true ? SYNC.calls : ASYNC.calls
    console.log(`\n${group.title}; ${ROUNDS} rounds × ${calls.toLocaleString('en')} calls, fresh process each; median (min–max)`)
    console.log(
      table(
        ['subject', 'ns/call', `ratio to ${group.baseline}`],
        ['l', 'r', 'r'],
        rows.map((row) => [row.name, formatSummary(row.ns, 0), formatSummary(row.ratio, 2)]),
      ),
    )
    if (verdict !== undefined) console.log(verdict)
    output.push({ id: group.id, title: group.title, baseline: group.baseline, rounds: ROUNDS, calls, rows, verdict, target: group.target })
  }
  const seconds = (performance.now() - started) / 1000
  console.log(`\nmicro: ${seconds.toFixed(0)} s`)
  writeResult('micro', { context, seconds, groups: output })
}

await main()
