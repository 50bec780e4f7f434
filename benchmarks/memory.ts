// Memory: (1) heap retained after 1,000,000 requests through the full stack
// (design section 5) against bare Express, same run; (2) heap per breaker for
// 10,000 keyed breakers in a BreakerGroup against 10,000 opossum circuits and
// 10,000 cockatiel policies, with the /metrics render time at that size.
//
//   node --experimental-strip-types --expose-gc benchmarks/memory.ts
//
// The 1,000,000 requests go through the real http.Server, its HTTP parser,
// Express and every middleware, but over in-memory sockets (stream.duplexPair)
// instead of TCP: autocannon would need 2–4 minutes per app for a million
// requests on this machine. Bare and full stack run in two child processes at the
// same time (heap is per process; timing is not what is measured here).
// Bounded: the request children have a 6-minute limit (~1 min in practice); the
// keyed children stop creating keys after 20 s each.
//
// Every heap figure at rest is `heap()` below: taken from a fresh macrotask, after
// V8's most thorough GC, the same way at every checkpoint. Each phase also samples
// the heap half-way through, with requests in flight: retention that is released
// only when the server goes idle shows there and at no checkpoint.
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { BreakerGroup } from '@ballast/breaker'
import { ConsecutiveBreaker, circuitBreaker, handleAll } from 'cockatiel'
import { Registry } from 'prom-client'
import { type AppKind, buildApp } from './_lib/apps.ts'
import { inject } from './_lib/inject.ts'
import { QUICK, writeResult } from './_lib/results.ts'
import { describeContext, mb, median, runContext, table } from './_lib/stats.ts'

const require = createRequire(import.meta.url)
const TOTAL = QUICK ? 50_000 : 1_000_000
const CHECKPOINTS = 4
const WARMUP = QUICK ? 5_000 : 20_000
const KEYS = QUICK ? 2_000 : 10_000
const KEYED_BUDGET_MS = QUICK ? 5_000 : 20_000

type Collect = (options?: { type: 'major'; execution: 'sync'; flavor?: 'regular' | 'last-resort' }) => void
const collector = (): Collect => {
  const collect = (globalThis as { gc?: Collect }).gc
  if (collect === undefined) throw new Error('run with --expose-gc')
  return collect
}
const gc = (): void => {
  const collect = collector()
  collect()
  collect()
}
const SETTLE_ROUNDS = 4
/**
 * Retained heap: `heapUsed` after {@link SETTLE_ROUNDS} rounds of (a fresh macrotask,
 * then V8's last-resort GC). Measured synchronously where `await inject()` resumes,
 * the heap kept the last request of the phase whenever a stack frame below the
 * resumed continuation still held it: its sockets and, with them, the request
 * path's optimized code (~0.25 MB), which the GC otherwise discards when no request
 * is alive. Those checkpoints, in practice the warm-up and the last one, read
 * 0.3–0.4 MB higher than the others.
 * `setImmediate` starts from an empty stack and lets queued callbacks (the destroyed
 * sockets' `close`) run. The last-resort GC (CollectAllAvailableGarbage: repeated
 * full GCs while weak callbacks free more, reducing memory) and the rounds age and
 * flush bytecode nothing runs any more (start-up code, the type stripper's 3.8 MB
 * source) before the warm-up baseline, instead of at whichever later GC reaches
 * its age, which dropped the heap by ~5 MB at a random checkpoint.
 */
const heap = async (): Promise<number> => {
  const collect = collector()
  for (let round = 0; round < SETTLE_ROUNDS; round++) {
    await new Promise((resolve) => setImmediate(resolve))
    collect({ type: 'major', execution: 'sync', flavor: 'last-resort' })
  }
  return process.memoryUsage().heapUsed
}

interface RequestsResult {
  kind: AppKind
  requests: number
  heapAfterWarmup: number
  checkpoints: { requests: number; heapUsed: number }[]
  /**
   * Heap half-way through each phase, requests in flight (`heapUsed` after 2 × gc,
   * from inside a request): what the server holds under load.
   */
  inFlight: { requests: number; heapUsed: number }[]
  retained: number
  /** Highest heap at any checkpoint minus the heap after warm-up. */
  peakRetained: number
  /**
   * Bytes per request of heap growth over the second half (from the middle to the
   * last checkpoint): a leak shows here, V8's one-off bytecode flushing does not.
   */
  slope: number
  microsPerRequest: number
  activeBefore: string[]
  activeAfter: string[]
  non2xx: number
}

async function requestsChild(kind: AppKind): Promise<RequestsResult> {
  const built = buildApp(kind)
  const activeBefore = process.getActiveResourcesInfo()
  const options = { paths: built.paths, connections: 8, timeoutMs: 300_000 }
  await inject(built.server, { ...options, total: WARMUP })
  const heapAfterWarmup = await heap()
  const checkpoints: { requests: number; heapUsed: number }[] = []
  // inject() keeps the loop busy with ticks and promises until its last response, so
  // no timer or immediate runs mid-phase: the in-flight sample is taken from inside
  // the request that reaches the middle of the phase.
  const inFlight: { requests: number; heapUsed: number }[] = []
  const phase = TOTAL / CHECKPOINTS
  let seen = 0
  const sample = () => {
    seen++
    if (seen % phase !== phase / 2) return
    gc()
    inFlight.push({ requests: seen, heapUsed: process.memoryUsage().heapUsed })
  }
  built.server.prependListener('request', sample)
  let ms = 0
  let non2xx = 0
  for (let i = 1; i <= CHECKPOINTS; i++) {
    const result = await inject(built.server, { ...options, total: phase })
    ms += result.ms
    non2xx += result.non2xx
    checkpoints.push({ requests: phase * i, heapUsed: await heap() })
  }
  built.server.removeListener('request', sample)
  // Sockets are destroyed by inject(); let their close events run before looking.
  await new Promise((resolve) => setTimeout(resolve, 100))
  const activeAfter = process.getActiveResourcesInfo()
  built.dispose()
  const first = checkpoints[CHECKPOINTS / 2 - 1] as { requests: number; heapUsed: number }
  const last = checkpoints.at(-1) as { requests: number; heapUsed: number }
  return {
    kind,
    requests: TOTAL,
    heapAfterWarmup,
    checkpoints,
    inFlight,
    retained: last.heapUsed - heapAfterWarmup,
    peakRetained: Math.max(...checkpoints.map((c) => c.heapUsed)) - heapAfterWarmup,
    slope: (last.heapUsed - first.heapUsed) / (last.requests - first.requests),
    microsPerRequest: (ms * 1000) / TOTAL,
    activeBefore,
    activeAfter,
    non2xx,
  }
}

interface KeyedResult {
  subject: string
  /** Keys asked for, and keys created before the time bound. */
  keys: number
  created: number
  bytesPerKey: number
  /** Milliseconds per key over each successive 250 keys (each key called once). */
  msPerKey: number[]
  series?: number
  scrapeMs?: number
  scrapeBytes?: number
}

async function keyedChild(subject: string): Promise<KeyedResult> {
  const work = () => Promise.resolve(1)
  const before = await heap()
  const keep: unknown[] = []
  let registry: Registry | undefined
  let create: (i: number) => Promise<unknown>
  if (subject === 'ballast BreakerGroup') {
    registry = new Registry()
    const group = new BreakerGroup({ name: 'host', maxKeys: KEYS, registry })
    keep.push(group)
    create = (i) => group.get(`h${i}`).execute(work)
  } else if (subject === 'opossum (defaults)') {
    const CircuitBreaker = require('opossum') as new (action: () => Promise<number>) => { fire(): Promise<number> }
    create = (_i) => {
      const circuit = new CircuitBreaker(work)
      keep.push(circuit)
      return circuit.fire()
    }
  } else {
    create = (_i) => {
      const policy = circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) })
      keep.push(policy)
      return policy.execute(work)
    }
  }
  // Bounded in time as well as in keys: creation that slows down with the number of
  // keys already held stops at KEYED_BUDGET_MS and reports how far it got.
  const started = performance.now()
  const msPerKey: number[] = []
  let created = 0
  let lap = started
  while (created < KEYS && performance.now() - started < KEYED_BUDGET_MS) {
    await create(created)
    created++
    if (created % 250 === 0) {
      const now = performance.now()
      msPerKey.push((now - lap) / 250)
      lap = now
    }
  }
  const after = await heap()
  const result: KeyedResult = { subject, keys: KEYS, created, bytesPerKey: (after - before) / created, msPerKey }
  if (registry !== undefined) {
    const times: number[] = []
    let text = ''
    for (let i = 0; i < 3; i++) {
      const renderStarted = performance.now()
      text = await registry.metrics()
      times.push(performance.now() - renderStarted)
    }
    result.series = text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length
    result.scrapeMs = median(times)
    result.scrapeBytes = Buffer.byteLength(text)
  }
  if (keep.length === 0) throw new Error('nothing kept')
  return result
}

function child<T>(args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--expose-gc', import.meta.filename, ...args],
      { stdio: ['ignore', 'pipe', 'inherit'], timeout: 360_000 },
    )
    let out = ''
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
    })
    proc.once('exit', (code, signal) => {
      if (code !== 0) reject(new Error(`memory ${args.join(' ')} exited with ${code ?? signal}`))
      else resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '') as T)
    })
  })
}

const KEYED = ['ballast BreakerGroup', 'opossum (defaults)', 'cockatiel circuitBreaker']

/** Largest heap with requests in flight minus the heap at rest after the same phase. */
const releasedWhenIdle = (r: RequestsResult): number =>
  Math.max(...r.inFlight.map((c, i) => c.heapUsed - (r.checkpoints[i]?.heapUsed ?? Number.NaN)))

async function main(): Promise<void> {
  const mode = process.argv[2]
  if (mode === '--requests') {
    const result = await requestsChild(process.argv[3] as AppKind)
    process.stdout.write(`${JSON.stringify(result)}\n`)
    // Express keeps no timers; the drain and breakers were disposed: exit on our own.
    return
  }
  if (mode === '--keyed') {
    process.stdout.write(`${JSON.stringify(await keyedChild(process.argv[3] as string))}\n`)
    // The kept breakers are alive on purpose (their timers too): end here.
    process.exit(0)
  }
  const context = runContext()
  const started = performance.now()
  console.log(describeContext(context))
  const requests = await Promise.all((['bare', 'full'] as const).map((kind) => child<RequestsResult>(['--requests', kind])))
  const bare = requests[0] as RequestsResult
  const full = requests[1] as RequestsResult
  console.log(
    `\nHeap retained after ${TOTAL.toLocaleString('en')} requests (in-memory sockets, 8 keep-alive connections, after a ${WARMUP.toLocaleString('en')}-request warm-up; heapUsed from a fresh macrotask after ${SETTLE_ROUNDS} × last-resort gc)`,
  )
  console.log(
    table(
      [
        'app',
        ...full.checkpoints.map((c) => `heap at ${(c.requests / 1000).toFixed(0)}k MB`),
        'retained vs warm-up MB',
        'peak retained MB',
        'growth bytes/request (2nd half)',
        'in-process µs/request',
      ],
      ['l', ...full.checkpoints.map(() => 'r' as const), 'r', 'r', 'r', 'r'],
      requests.map((r) => [
        r.kind === 'bare' ? 'bare Express 5' : 'full stack (design §5)',
        ...r.checkpoints.map((c) => mb(c.heapUsed)),
        mb(r.retained),
        mb(r.peakRetained),
        r.slope.toFixed(3),
        r.microsPerRequest.toFixed(1),
      ]),
    ),
  )
  console.log(`full stack minus bare: ${mb(full.retained - bare.retained)} MB retained after ${TOTAL.toLocaleString('en')} requests`)
  console.log('\nHeap with requests in flight (half-way through each phase, from inside a request; heapUsed after 2 × gc)')
  console.log(
    table(
      ['app', ...full.inFlight.map((c) => `heap at ${(c.requests / 1000).toFixed(0)}k MB`), 'released when idle MB (max)'],
      ['l', ...full.inFlight.map(() => 'r' as const), 'r'],
      requests.map((r) => [
        r.kind === 'bare' ? 'bare Express 5' : 'full stack (design §5)',
        ...r.inFlight.map((c) => mb(c.heapUsed)),
        mb(releasedWhenIdle(r)),
      ]),
    ),
  )
  console.log(
    `full stack minus bare: ${mb(releasedWhenIdle(full) - releasedWhenIdle(bare))} MB more held with requests in flight than at rest (in-flight sample minus the checkpoint that ends its phase)`,
  )
  const keyed: KeyedResult[] = []
  for (const subject of KEYED) keyed.push(await child<KeyedResult>(['--keyed', subject]))
  const baseline = keyed.find((k) => k.subject === 'opossum (defaults)')?.bytesPerKey ?? Number.NaN
  console.log(
    `\n${KEYS.toLocaleString('en')} keyed breakers (or as many as ${KEYED_BUDGET_MS / 1000} s allow), each called once, heap per breaker (fresh process each)`,
  )
  console.log(
    table(
      [
        'subject',
        'keys created',
        'KB per breaker',
        'ratio to opossum',
        'ms per key (first 250 → last 250)',
        'series',
        '/metrics render ms',
        '/metrics size KB',
      ],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      keyed.map((k) => [
        k.subject,
        k.created.toLocaleString('en'),
        (k.bytesPerKey / 1024).toFixed(2),
        (k.bytesPerKey / baseline).toFixed(2),
        k.msPerKey.length === 0 ? '—' : `${(k.msPerKey[0] as number).toFixed(3)} → ${(k.msPerKey.at(-1) as number).toFixed(3)}`,
        k.series?.toLocaleString('en') ?? '—',
        k.scrapeMs?.toFixed(0) ?? '—',
        k.scrapeBytes === undefined ? '—' : (k.scrapeBytes / 1024).toFixed(0),
      ]),
    ),
  )
  const seconds = (performance.now() - started) / 1000
  console.log(`\nmemory: ${seconds.toFixed(0)} s`)
  writeResult('memory', { context, seconds, total: TOTAL, warmup: WARMUP, requests, keyed })
}

await main()
