// HTTP load helpers: start an app in its own child process (see server-child.ts)
// and drive it with autocannon from this process, bounded in time.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import type { AppKind, AppOptions } from './apps.ts'
import type { ChildReply, ChildRequest } from './server-child.ts'

const require = createRequire(import.meta.url)

interface AutocannonResult {
  requests: { average: number; total: number }
  latency: { p50: number; p99: number; average: number }
  non2xx: number
  errors: number
  timeouts: number
  duration: number
}
const autocannon = require('autocannon') as (options: object) => Promise<AutocannonResult>

export interface RunningApp {
  readonly kind: AppKind
  readonly base: string
  readonly paths: readonly string[]
  cpuMicros(): Promise<number>
  heapUsed(): Promise<number>
  scrape(count: number): Promise<{ scrapeMs: number[]; bytes: number; series: number }>
  /** Starts the V8 CPU profiler in the app (inspector, sampling every 200 µs). */
  profileStart(): Promise<unknown>
  /** Stops it and writes the .cpuprofile to `file`. */
  profileStop(file: string): Promise<unknown>
  close(): Promise<void>
}

const CHILD = join(import.meta.dirname, 'server-child.ts')

/** Starts `kind` in a child process. */
export async function startApp(kind: AppKind, options: AppOptions = {}): Promise<RunningApp> {
  const flags = ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--expose-gc']
  const child = spawn(process.execPath, [...flags, CHILD, kind, JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  })
  const exited = once(child, 'exit')
  const [chunk] = (await Promise.race([
    once(child.stdout as NodeJS.ReadableStream, 'data'),
    exited.then(() => {
      throw new Error(`app ${kind} exited before listening`)
    }),
  ])) as [Buffer]
  const { port, paths } = JSON.parse(chunk.toString()) as { port: number; paths: string[] }
  const ask = async <T extends ChildReply>(request: ChildRequest): Promise<T> => {
    child.send(request)
    const [answer] = (await once(child, 'message')) as [T]
    return answer
  }
  return {
    kind,
    base: `http://127.0.0.1:${port}`,
    paths,
    cpuMicros: async () => (await ask<{ cpuMicros: number }>({ type: 'cpu' })).cpuMicros,
    heapUsed: async () => (await ask<{ heapUsed: number }>({ type: 'heap' })).heapUsed,
    scrape: (count) => ask({ type: 'scrape', count }),
    profileStart: () => ask({ type: 'profileStart' }),
    profileStop: (file) => ask({ type: 'profileStop', file }),
    close: () => closeChild(child, exited),
  }
}

async function closeChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null) return
  child.disconnect()
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

export interface LoadResult {
  readonly rps: number
  readonly p50: number
  readonly p99: number
  readonly total: number
  /** Server CPU time (user + system) per request, µs. */
  readonly cpuPerRequest: number
}

/**
 * One autocannon round against `app` (its paths cycled per connection), bounded by
 * `duration` seconds. With `scrapeEvery` ms, GET /metrics is fetched at that
 * interval during the round, as a Prometheus server would. Throws on any error
 * or non-2xx answer, so a broken app never yields a number.
 */
export async function load(app: RunningApp, duration: number, connections: number, scrapeEvery?: number): Promise<LoadResult> {
  const cpuBefore = await app.cpuMicros()
  let scraper: NodeJS.Timeout | undefined
  const scrapes: Promise<unknown>[] = []
  if (scrapeEvery !== undefined) {
    scraper = setInterval(() => {
      scrapes.push(
        fetch(`${app.base}/metrics`).then(async (response) => {
          await response.arrayBuffer()
          if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`)
        }),
      )
    }, scrapeEvery)
  }
  try {
    const result = await autocannon({
      url: app.base,
      connections,
      duration,
      requests: app.paths.map((path) => ({ method: 'GET', path })),
    })
    if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
      throw new Error(`${app.kind}: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts`)
    }
    const cpuAfter = await app.cpuMicros()
    return {
      rps: result.requests.total / result.duration,
      p50: result.latency.p50,
      p99: result.latency.p99,
      total: result.requests.total,
      cpuPerRequest: (cpuAfter - cpuBefore) / result.requests.total,
    }
  } finally {
    if (scraper !== undefined) clearInterval(scraper)
    await Promise.all(scrapes)
  }
}
