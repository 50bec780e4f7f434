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

const gc = (): void => {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect === undefined) throw new Error('run with --expose-gc')
  collect()
  collect()
}
const heap = (): number => {
  gc()
  return process.memoryUsage().heapUsed
}

interface RequestsResult {
  kind: AppKind
  requests: number
  heapAfterWarmup: number
  checkpoints: { requests: number; heapUsed: number }[]
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
  const heapAfterWarmup = heap()
  const checkpoints: { requests: number; heapUsed: number }[] = []
  let ms = 0
  let non2xx = 0
  for (let i = 1; i <= CHECKPOINTS; i++) {
    const result = await inject(built.server, { ...options, total: TOTAL / CHECKPOINTS })
    ms += result.ms
    non2xx += result.non2xx
    checkpoints.push({ requests: (TOTAL / CHECKPOINTS) * i, heapUsed: heap() })
  }
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
  const before = heap()
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
  const after = heap()
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
    `\nHeap retained after ${TOTAL.toLocaleString('en')} requests (in-memory sockets, 8 keep-alive connections, after a ${WARMUP.toLocaleString('en')}-request warm-up; heapUsed after 2 × gc)`,
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
