// HTTP overhead of each ballast layer on Express 5 `GET /hello`, against bare
// Express and the peers, in one run: req/s ratio to bare Express (same round),
// p99 latency, and the server's CPU time per request.
//
//   node --experimental-strip-types --expose-gc benchmarks/overhead-http.ts
//
// Layers are cumulative, as an app adopts them: bare → + drain.middleware() →
// + deadline() → + metrics (GET /metrics mounted and scraped every second during
// the load, 15× a usual scrape rate) → the full design-section-5 stack (probes,
// route deadline, an in-process dependency behind a Breaker with retry and
// fallback); for reference, bare Express with the full stack's handler shape
// (the in-process dependency awaited, no breaker). Peers alone on bare Express: express-prom-bundle (also scraped every
// second), connect-timeout, @godaddy/terminus. A calibration app, bare Express plus a
// middleware that busy-waits 4 µs, shows what work of a known size costs in each table.
//
// Bounded: 5 rounds × 10 apps × (3 s warm-up + 2 s measured) with 20 keep-alive
// connections (~4.5 min), then 2 profiled runs of 4 s, then the in-process cost
// table (6 apps × 5 rounds × 20,000 requests over in-memory sockets, ~25 s). Each app
// starts in a fresh child process (one core) every round, autocannon runs in this
// one; the order rotates every round.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { type AppKind, BUSY_MICROS, type BuiltApp, buildApp } from './_lib/apps.ts'
import { type LoadResult, load, startApp } from './_lib/http.ts'
import { inject } from './_lib/inject.ts'
import { areaOf, type ProfileSummary, profileMarkdown, summarizeProfile } from './_lib/profile.ts'
import { QUICK, RESULTS_DIR, writeResult } from './_lib/results.ts'
import { describeContext, formatSummary, roundOrder, runContext, summarize, table } from './_lib/stats.ts'

const ROUNDS = QUICK ? 2 : 5
const DURATION = QUICK ? 1 : 2
// Long enough for the optimizing compiler to be done: after 1 s, background
// compilation still showed in the measured CPU time.
const WARMUP = QUICK ? 1 : 3
const CONNECTIONS = 20
const SCRAPE_EVERY_MS = 1_000
const PROFILE_SECONDS = QUICK ? 1 : 4

interface AppSpec {
  readonly kind: AppKind
  readonly label: string
  readonly group: 'baseline' | 'ballast' | 'peer'
  /** The layer below, for the per-layer ratio. */
  readonly below?: AppKind
  readonly target?: number
  readonly scraped?: boolean
}

const APPS: AppSpec[] = [
  { kind: 'bare', label: 'bare Express 5', group: 'baseline' },
  { kind: 'bare-async', label: 'bare Express 5, async handler (reference)', group: 'baseline' },
  { kind: 'busy', label: `bare Express 5 + ${BUSY_MICROS} µs busy-wait (calibration)`, group: 'baseline' },
  { kind: 'drain', label: '+ drain.middleware()', group: 'ballast', below: 'bare', target: 0.97 },
  { kind: 'deadline', label: '+ deadline()', group: 'ballast', below: 'drain', target: 0.97 },
  { kind: 'metrics', label: '+ metrics (/metrics scraped 1/s)', group: 'ballast', below: 'deadline', target: 0.97, scraped: true },
  { kind: 'full', label: 'full stack (design §5, Breaker)', group: 'ballast', target: 0.95, scraped: true },
  { kind: 'express-prom-bundle', label: 'express-prom-bundle (scraped 1/s)', group: 'peer', scraped: true },
  { kind: 'connect-timeout', label: 'connect-timeout', group: 'peer' },
  { kind: 'terminus', label: '@godaddy/terminus', group: 'peer' },
]

async function main(): Promise<void> {
  const context = runContext()
  const started = performance.now()
  console.log(describeContext(context))
  const rounds: Map<AppKind, LoadResult>[] = []
  for (let round = 0; round < ROUNDS; round++) {
    const results = new Map<AppKind, LoadResult>()
    for (const spec of roundOrder(APPS, round)) {
      // A fresh process per app and round: one process's JIT and heap layout can sit a
      // couple of µs per request above or below another's for its whole life, and one
      // process per app for the whole run handed that luck to every round.
      const app = await startApp(spec.kind)
      try {
        const scrapeEvery = spec.scraped ? SCRAPE_EVERY_MS : undefined
        await load(app, WARMUP, CONNECTIONS, scrapeEvery)
        results.set(spec.kind, await load(app, DURATION, CONNECTIONS, scrapeEvery))
      } finally {
        await app.close()
      }
    }
    rounds.push(results)
    console.error(
      `round ${round + 1}/${ROUNDS}: ${APPS.map((spec) => `${spec.kind} ${results.get(spec.kind)?.rps.toFixed(0)}`).join(', ')}`,
    )
  }

  const pick = (kind: AppKind, field: keyof LoadResult) => rounds.map((round) => (round.get(kind) as LoadResult)[field])
  const ratio = (kind: AppKind, to: AppKind) =>
    rounds.map((round) => (round.get(kind) as LoadResult).rps / (round.get(to) as LoadResult).rps)
  const cpuRatio = (kind: AppKind, to: AppKind) =>
    rounds.map((round) => (round.get(to) as LoadResult).cpuPerRequest / (round.get(kind) as LoadResult).cpuPerRequest)
  const rows = APPS.map((spec) => {
    const toBare = summarize(ratio(spec.kind, 'bare'))
    const layer = spec.below === undefined ? undefined : summarize(ratio(spec.kind, spec.below))
    const judged = spec.below === undefined ? toBare : (layer as typeof toBare)
    return {
      ...spec,
      rps: summarize(pick(spec.kind, 'rps')),
      p50: summarize(pick(spec.kind, 'p50')),
      p99: summarize(pick(spec.kind, 'p99')),
      p99Ratio: summarize(rounds.map((round) => (round.get(spec.kind) as LoadResult).p99 / (round.get('bare') as LoadResult).p99)),
      cpuPerRequest: summarize(pick(spec.kind, 'cpuPerRequest')),
      toBare,
      layer,
      cpuToBare: summarize(cpuRatio(spec.kind, 'bare')),
      met: spec.target === undefined ? undefined : judged.median >= spec.target,
    }
  })

  console.log(
    `\nExpress 5 GET /hello, ${ROUNDS} interleaved rounds × ${DURATION} s × ${CONNECTIONS} connections (autocannon), median (min–max) over rounds`,
  )
  console.log(
    table(
      ['app', 'req/s', 'ratio to bare', 'ratio to layer below', 'p99 ms', 'server CPU µs/req', 'CPU ratio bare/app', 'target'],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
      rows.map((row) => [
        row.label,
        formatSummary(row.rps, 0),
        formatSummary(row.toBare, 3),
        row.layer === undefined ? '—' : formatSummary(row.layer, 3),
        formatSummary(row.p99, 0),
        formatSummary(row.cpuPerRequest, 1),
        formatSummary(row.cpuToBare, 3),
        row.target === undefined ? '' : `≥ ${row.target} ${row.met ? 'met' : 'MISSED'}`,
      ]),
    ),
  )

  // Where the time goes: bare Express as the reference and the full stack, each
  // profiled alone after its own warm-up (the layers' own costs are in the in-process table).
  const profiles: { kind: AppKind; label: string; requests: number; summary: ProfileSummary }[] = []
  const toProfile = rows.filter((row) => row.kind === 'bare' || row.kind === 'full')
  for (const row of toProfile) {
    const dir = join(RESULTS_DIR, 'profiles')
    mkdirSync(dir, { recursive: true })
    const file = join(dir, `overhead-${row.kind}.cpuprofile`)
    const app = await startApp(row.kind)
    let requests = 0
    try {
      await load(app, WARMUP, CONNECTIONS)
      await app.profileStart()
      requests = (await load(app, PROFILE_SECONDS, CONNECTIONS, row.scraped ? SCRAPE_EVERY_MS : undefined)).total
      await app.profileStop(file)
    } finally {
      await app.close()
    }
    const summary = summarizeProfile(file)
    profiles.push({ kind: row.kind, label: row.label, requests, summary })
    console.log(
      `\nCPU profile of "${row.label}" under load (${PROFILE_SECONDS} s, ${requests} requests, V8 sampling profiler):\n${profileMarkdown(summary)}`,
    )
    // The raw profile is large (open it in Chrome DevTools to dig); the summary is what the report needs.
    rmSync(file)
  }
  const inProcess = await inProcessCosts()
  const seconds = (performance.now() - started) / 1000
  console.log(`\noverhead-http: ${seconds.toFixed(0)} s`)
  writeResult('overhead-http', {
    context,
    seconds,
    settings: { rounds: ROUNDS, duration: DURATION, warmup: WARMUP, connections: CONNECTIONS, scrapeEveryMs: SCRAPE_EVERY_MS },
    rows,
    profiles,
    inProcess,
  })
}

await main()

/**
 * The CPU each layer costs per request without TCP and without autocannon: the
 * same apps built in this process and driven over in-memory sockets, interleaved
 * rounds, process CPU time per request. Far less noisy than req/s on a shared
 * machine, and it is the number a fix has to move. Then a profile of the full
 * stack the same way, for the ballast functions with the most self time.
 */
async function inProcessCosts() {
  // Each layer with the one below it; the calibration app against bare Express only.
  const layers: [AppKind, AppKind | undefined][] = [
    ['bare', undefined],
    ['drain', 'bare'],
    ['deadline', 'drain'],
    ['metrics', 'deadline'],
    ['full', 'metrics'],
    ['busy', undefined],
  ]
  const kinds = layers.map(([kind]) => kind)
  const requests = QUICK ? 2_000 : 20_000
  const built = new Map(kinds.map((kind) => [kind, buildApp(kind)]))
  const samples = new Map<AppKind, number[]>(kinds.map((kind) => [kind, []]))
  const drive = (kind: AppKind, total: number) => {
    const app = built.get(kind) as BuiltApp
    return inject(app.server, { paths: app.paths, total, connections: 8, timeoutMs: 120_000 })
  }
  for (const kind of kinds) await drive(kind, requests)
  for (let round = 0; round < 5; round++) {
    for (const kind of roundOrder(kinds, round)) {
      const before = process.cpuUsage()
      const result = await drive(kind, requests)
      if (result.non2xx !== 0) throw new Error(`${kind}: ${result.non2xx} non-2xx in process`)
      const used = process.cpuUsage(before)
      samples.get(kind)?.push((used.user + used.system) / requests)
    }
  }
  const rows = layers.map(([kind, layerBelow]) => {
    const mine = samples.get(kind) ?? []
    const bare = samples.get('bare') ?? []
    const below = layerBelow === undefined ? undefined : (samples.get(layerBelow) ?? [])
    return {
      kind,
      label: APPS.find((spec) => spec.kind === kind)?.label ?? kind,
      micros: summarize(mine),
      addedToBare: summarize(mine.map((value, round) => value - (bare[round] as number))),
      addedToBelow: below === undefined ? undefined : summarize(mine.map((value, round) => value - (below[round] as number))),
    }
  })
  console.log(
    `\nIn-process CPU per request (no TCP; 5 interleaved rounds × ${requests.toLocaleString('en')} requests over in-memory sockets); median (min–max)`,
  )
  console.log(
    table(
      ['app', 'CPU µs/request', 'added to bare µs', 'added to the layer below µs'],
      ['l', 'r', 'r', 'r'],
      rows.map((row) => [
        row.label,
        formatSummary(row.micros, 1),
        formatSummary(row.addedToBare, 1),
        row.addedToBelow === undefined ? '—' : formatSummary(row.addedToBelow, 1),
      ]),
    ),
  )
  const dir = join(RESULTS_DIR, 'profiles')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, 'in-process-full.cpuprofile')
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 100 })
  await session.post('Profiler.start')
  await drive('full', requests * 3)
  const { profile } = await session.post('Profiler.stop')
  // Then what the full stack allocates per request (the GC share above), with the
  // sampling heap profiler: bytes allocated by function, sampled every 4 KB.
  await session.post('HeapProfiler.enable')
  const sample = async (kind: AppKind) => {
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 4_096,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    })
    await drive(kind, requests)
    const { profile: heapProfile } = await session.post('HeapProfiler.stopSampling')
    return allocationSites(heapProfile, requests)
  }
  const bareAllocations = await sample('bare')
  const allocations = { ...(await sample('full')), barePerRequest: bareAllocations.totalPerRequest }
  session.disconnect()
  writeFileSync(file, JSON.stringify(profile))
  const summary = summarizeProfile(file, 40)
  rmSync(file)
  const ballastFunctions = summary.functions.filter((f) => f.area.startsWith('@ballast/')).slice(0, 12)
  console.log(
    `\nIn-process profile of the full stack (${(requests * 3).toLocaleString('en')} requests): ${profileMarkdown({ ...summary, functions: ballastFunctions })}`,
  )
  console.log(
    `\nAllocations of the full stack per request (sampling heap profiler, ${requests.toLocaleString('en')} requests): ${allocations.totalPerRequest.toFixed(0)} bytes/request in all (bare Express: ${allocations.barePerRequest.toFixed(0)}); top sites:`,
  )
  console.log(
    table(
      ['bytes/request', 'function', 'area', 'where'],
      ['r', 'l', 'l', 'l'],
      allocations.sites.map((site) => [
        site.perRequest.toFixed(0),
        `\`${site.name}\``,
        site.area,
        site.where === '' ? '—' : `\`${site.where}\``,
      ]),
    ),
  )
  for (const app of built.values()) app.dispose()
  return { requests, rows, profile: { ...summary, functions: summary.functions.slice(0, 20) }, ballastFunctions, allocations }
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number }
  selfSize: number
  children: HeapNode[]
}

/** Bytes allocated per request by function (self), from a sampling heap profile. */
function allocationSites(profile: { head: HeapNode }, requests: number) {
  const sites = new Map<string, { name: string; where: string; area: string; bytes: number }>()
  let total = 0
  const visit = (node: HeapNode) => {
    const frame = node.callFrame
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
    const where =
      frame.url === ''
        ? ''
        : `${frame.url
            .replace(/^file:\/\//, '')
            .replace(/^.*\/node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?/, '')
            .replace(/^.*\/packages\//, 'packages/')
            .replace(/^.*\/benchmarks\//, 'benchmarks/')}:${frame.lineNumber + 1}`
    const key = `${name}@${where}`
    const site = sites.get(key) ?? { name, where, area: areaOf(frame.url, name), bytes: 0 }
    site.bytes += node.selfSize
    total += node.selfSize
    sites.set(key, site)
    for (const child of node.children) visit(child)
  }
  visit(profile.head)
  return {
    totalPerRequest: total / requests,
    sites: [...sites.values()]
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, 15)
      .map((site) => ({ ...site, perRequest: site.bytes / requests })),
  }
}
