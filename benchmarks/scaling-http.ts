// Scaling of the full stack (design section 5) with the number of routes and of
// breakers: req/s (ratio to 1 route / 1 breaker in the same round), server heap,
// metric series and the time to render /metrics.
//
//   node --experimental-strip-types --expose-gc benchmarks/scaling-http.ts
//
// Routes `/r<i>/:id` each carry a route deadline() and call breaker i % B; the load
// cycles through all routes on every connection, and /metrics is scraped every
// second. Configurations: 1, 10, 100 routes with 1 breaker; 100 routes with 10 and
// 100 breakers. Bounded: 5 apps × (1 s warm-up + 5 rounds × 2 s) with 20
// connections (~1 min); each app in its own child process.
import type { AppOptions } from './_lib/apps.ts'
import { type LoadResult, load, type RunningApp, startApp } from './_lib/http.ts'
import { QUICK, writeResult } from './_lib/results.ts'
import { describeContext, formatSummary, mb, median, roundOrder, runContext, summarize, table } from './_lib/stats.ts'

const ROUNDS = QUICK ? 2 : 5
const DURATION = QUICK ? 1 : 2
const CONNECTIONS = 20
const SCRAPE_EVERY_MS = 1_000
const SCRAPES = 20

const CONFIGS: (Required<AppOptions> & { id: string })[] = [
  { id: '1 route, 1 breaker', routes: 1, breakers: 1 },
  { id: '10 routes, 1 breaker', routes: 10, breakers: 1 },
  { id: '100 routes, 1 breaker', routes: 100, breakers: 1 },
  { id: '100 routes, 10 breakers', routes: 100, breakers: 10 },
  { id: '100 routes, 100 breakers', routes: 100, breakers: 100 },
]

async function main(): Promise<void> {
  const context = runContext()
  const started = performance.now()
  console.log(describeContext(context))
  const apps = new Map<string, RunningApp>()
  const rounds: Map<string, LoadResult>[] = []
  const after = new Map<string, { heap: number; scrapeMs: number; bytes: number; series: number }>()
  try {
    for (const config of CONFIGS) apps.set(config.id, await startApp('scale', { routes: config.routes, breakers: config.breakers }))
    for (const config of CONFIGS) await load(apps.get(config.id) as RunningApp, 1, CONNECTIONS, SCRAPE_EVERY_MS)
    for (let round = 0; round < ROUNDS; round++) {
      const results = new Map<string, LoadResult>()
      for (const config of roundOrder(CONFIGS, round)) {
        results.set(config.id, await load(apps.get(config.id) as RunningApp, DURATION, CONNECTIONS, SCRAPE_EVERY_MS))
      }
      rounds.push(results)
      console.error(`round ${round + 1}/${ROUNDS}: ${CONFIGS.map((c) => `${c.id} ${results.get(c.id)?.rps.toFixed(0)}`).join(', ')}`)
    }
    for (const config of CONFIGS) {
      const app = apps.get(config.id) as RunningApp
      const scrape = await app.scrape(SCRAPES)
      after.set(config.id, { heap: await app.heapUsed(), scrapeMs: median(scrape.scrapeMs), bytes: scrape.bytes, series: scrape.series })
    }
  } finally {
    for (const app of apps.values()) await app.close()
  }
  const base = CONFIGS[0]?.id as string
  const baseHeap = after.get(base)?.heap ?? Number.NaN
  const rows = CONFIGS.map((config) => {
    const mine = rounds.map((round) => round.get(config.id) as LoadResult)
    const measured = after.get(config.id) as { heap: number; scrapeMs: number; bytes: number; series: number }
    return {
      ...config,
      rps: summarize(mine.map((r) => r.rps)),
      ratio: summarize(rounds.map((round) => (round.get(config.id) as LoadResult).rps / (round.get(base) as LoadResult).rps)),
      p99: summarize(mine.map((r) => r.p99)),
      cpuPerRequest: summarize(mine.map((r) => r.cpuPerRequest)),
      heap: measured.heap,
      heapDelta: measured.heap - baseHeap,
      series: measured.series,
      scrapeMs: measured.scrapeMs,
      scrapeBytes: measured.bytes,
    }
  })
  console.log(
    `\nFull stack with R routes and B breakers, ${ROUNDS} interleaved rounds × ${DURATION} s × ${CONNECTIONS} connections, /metrics scraped every ${SCRAPE_EVERY_MS / 1000} s; median (min–max)`,
  )
  console.log(
    table(
      [
        'routes',
        'breakers',
        'req/s',
        `ratio to ${base}`,
        'p99 ms',
        'server CPU µs/req',
        'heap MB',
        'heap vs 1/1 MB',
        'series',
        '/metrics render ms',
        '/metrics KB',
      ],
      ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      rows.map((row) => [
        String(row.routes),
        String(row.breakers),
        formatSummary(row.rps, 0),
        formatSummary(row.ratio, 3),
        formatSummary(row.p99, 0),
        formatSummary(row.cpuPerRequest, 1),
        mb(row.heap),
        mb(row.heapDelta),
        row.series.toLocaleString('en'),
        row.scrapeMs.toFixed(1),
        (row.scrapeBytes / 1024).toFixed(0),
      ]),
    ),
  )
  const seconds = (performance.now() - started) / 1000
  console.log(`\nscaling-http: ${seconds.toFixed(0)} s`)
  writeResult('scaling-http', { context, seconds, settings: { rounds: ROUNDS, duration: DURATION, connections: CONNECTIONS }, rows })
}

await main()
