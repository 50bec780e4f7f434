// Throughput and server CPU of an Express route making one outbound call through
// a @ballast/fetch client (breaker, per-attempt budget, propagation header,
// metrics) against the same route calling bare `fetch`, measured in the same
// run, in interleaved rounds. Two more routes show the floor any client with a
// timeout and deadline propagation stands on: bare `fetch` with a hand-written
// 1 s timeout (an AbortController + setTimeout: undici charges for the signal
// itself), and the same plus a `request-timeout-ms` header. A calibration route,
// bare `fetch` after a 4 µs busy-wait, shows what work of a known size costs in
// this harness, so the client's added CPU can be read as µs of work.
//
//   node --experimental-strip-types benchmarks/fetch-http.ts
//
// Bounded: a 2 s warm-up per route + 10 measured rounds × 5 routes × 2 s with
// 20 connections (~115 s), then ~15 s of stub calls. The Express app runs in its
// own child process (all four routes), the upstream in another, autocannon in
// this one, so the app's CPU time per request (user + system, read from the app
// process around each round) is measured apart from the load generator: on a
// shared machine req/s moves with whatever else runs, CPU per request much less.
// Many short rounds with the order rotated; the median of per-round ratios
// resists a noisy neighbour. Reported: req/s per route (median over rounds), the
// medians of the per-round ratios client / bare (target >= 0.95) and client /
// each floor route, in req/s and in server CPU per request; then the per-call
// cost of the client with a stub fetch, to show where the time goes.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { Deadline } from '@ballast/deadline'
import { createClient } from '@ballast/fetch'
import { Registry } from 'prom-client'
import { busyWait } from './_lib/busy.ts'

const require = createRequire(import.meta.url)
type Result = { requests: { average: number; total: number }; non2xx: number; errors: number }
// Loaded by the load generator only: the app processes must not pay for its start-up
// (it inflates a WebAssembly module), whose garbage would be collected during a round.
const autocannon = (options: object): Promise<Result> => (require('autocannon') as (options: object) => Promise<Result>)(options)

const ROUNDS = 10
const DURATION = 2
const CONNECTIONS = 20
const BUSY_MICROS = 4

const upstreamSource = `
const http = require('node:http')
const body = JSON.stringify({ sku: 'A-1', stock: 42, warehouse: 'east' })
const server = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }); res.end(body) })
server.keepAliveTimeout = 60000
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'))
process.on('disconnect', () => process.exit(0))
`

/** The Express app, in its own process: `serve <upstream>`; answers 'cpu' messages with its CPU time in µs. */
async function serve(upstream: string): Promise<void> {
  const { default: express } = await import('express')
  const client = createClient({ name: 'bench', baseUrl: upstream, timeout: 1_000, registry: new Registry() })
  const app = express()
  app.get('/bare', async (_req, res, next) => {
    try {
      const response = await fetch(`${upstream}/stock/A-1`)
      res.json(await response.json())
    } catch (error) {
      next(error)
    }
  })
  // Calibration: the bare call after work of a known size.
  app.get('/bare-busy', async (_req, res, next) => {
    busyWait(BUSY_MICROS)
    try {
      const response = await fetch(`${upstream}/stock/A-1`)
      res.json(await response.json())
    } catch (error) {
      next(error)
    }
  })
  // What a careful caller writes by hand: the same call with a 1 s timeout. Any timeout hands
  // fetch an AbortSignal, which costs undici more than the client's own bookkeeping does.
  app.get('/bare-timeout', async (_req, res, next) => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), 1_000)
    try {
      const response = await fetch(`${upstream}/stock/A-1`, { signal: controller.signal })
      res.json(await response.json())
    } catch (error) {
      next(error)
    } finally {
      clearTimeout(timer)
    }
  })
  // The same, also propagating the budget as the client does: the floor for a client that cancels and propagates.
  app.get('/bare-timeout-header', async (_req, res, next) => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), 1_000)
    try {
      const response = await fetch(`${upstream}/stock/A-1`, { signal: controller.signal, headers: { 'request-timeout-ms': '1000' } })
      res.json(await response.json())
    } catch (error) {
      next(error)
    } finally {
      clearTimeout(timer)
    }
  })
  app.get('/client', async (_req, res, next) => {
    try {
      res.json(await client.json('/stock/A-1'))
    } catch (error) {
      next(error)
    }
  })
  const server = app.listen(0, '127.0.0.1')
  server.keepAliveTimeout = 60_000
  await once(server, 'listening')
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`)
  process.on('message', () => {
    const { user, system } = process.cpuUsage()
    process.send?.(user + system)
  })
  process.on('disconnect', () => {
    server.close()
    server.closeAllConnections()
    client[Symbol.dispose]()
    process.exit(0)
  })
}

async function main(): Promise<void> {
  const upstreamChild = spawn(process.execPath, ['-e', upstreamSource], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
  const [chunk] = (await once(upstreamChild.stdout, 'data')) as [Buffer]
  const upstream = `http://127.0.0.1:${chunk.toString().trim()}`
  const appChild = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), 'serve', upstream], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  })
  const [portChunk] = (await once(appChild.stdout, 'data')) as [Buffer]
  const base = `http://127.0.0.1:${portChunk.toString().trim()}`
  const cpu = async (): Promise<number> => {
    appChild.send('cpu')
    const [micros] = (await once(appChild, 'message')) as [number]
    return micros
  }

  async function round(path: string, duration: number): Promise<{ rps: number; cpu: number }> {
    const before = await cpu()
    const result = await autocannon({ url: `${base}${path}`, connections: CONNECTIONS, duration })
    const after = await cpu()
    if (result.non2xx !== 0 || result.errors !== 0) throw new Error(`${path}: ${result.non2xx} non-2xx, ${result.errors} errors`)
    return { rps: result.requests.average, cpu: (after - before) / result.requests.total }
  }

  const paths = ['/bare', '/bare-busy', '/bare-timeout', '/bare-timeout-header', '/client'] as const
  type Path = (typeof paths)[number]
  for (const path of paths) await round(path, 2)
  const rps = Object.fromEntries(paths.map((path) => [path, [] as number[]])) as Record<Path, number[]>
  const cpuPer = Object.fromEntries(paths.map((path) => [path, [] as number[]])) as Record<Path, number[]>
  // Per round: client / route in req/s, route / client in CPU per request.
  const ratios = Object.fromEntries(paths.map((path) => [path, [] as number[]])) as Record<Path, number[]>
  const cpuRatios = Object.fromEntries(paths.map((path) => [path, [] as number[]])) as Record<Path, number[]>
  for (let i = 0; i < ROUNDS; i++) {
    // Rotate which route goes first so drift (other load, JIT) hits all alike.
    const order = [...paths.slice(i % paths.length), ...paths.slice(0, i % paths.length)]
    const result = {} as Record<Path, { rps: number; cpu: number }>
    for (const path of order) result[path] = await round(path, DURATION)
    for (const path of paths) {
      rps[path].push(result[path].rps)
      cpuPer[path].push(result[path].cpu)
      ratios[path].push(result['/client'].rps / result[path].rps)
      cpuRatios[path].push(result[path].cpu / result['/client'].cpu)
    }
    console.log(
      `round ${i + 1}: ${paths.map((path) => `${path} ${Math.round(result[path].rps)} req/s ${result[path].cpu.toFixed(1)} µs`).join(', ')}`,
    )
  }
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b)
    const mid = sorted.length >> 1
    return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
  }
  const spread = (values: number[]) => `min ${Math.min(...values).toFixed(3)}, max ${Math.max(...values).toFixed(3)}`
  const line = (label: string, path: Path) =>
    `${label.padEnd(34)}${String(Math.round(median(rps[path]))).padStart(6)} req/s   server CPU ${median(cpuPer[path]).toFixed(1)} µs/request (medians)`
  console.log(`\nExpress route + one outbound call, ${CONNECTIONS} connections, ${ROUNDS} × ${DURATION} s rounds (node ${process.version})`)
  console.log(line('bare fetch', '/bare'))
  console.log(line('bare fetch + 1 s timeout', '/bare-timeout'))
  console.log(line('bare fetch + 1 s timeout + header', '/bare-timeout-header'))
  console.log(line(`bare fetch after a ${BUSY_MICROS} µs busy-wait`, '/bare-busy'))
  console.log(line('@ballast/fetch', '/client'))
  const compare = (label: string, path: Path) => {
    console.log(
      `ratio client/${label.padEnd(24)} ${median(ratios[path]).toFixed(3)} req/s (median of per-round ratios; ${spread(ratios[path])})`,
    )
    console.log(
      `CPU ratio ${`${label}/client`.padEnd(31)} ${median(cpuRatios[path]).toFixed(3)} (median of per-round ratios; ${spread(cpuRatios[path])})`,
    )
  }
  compare('bare', '/bare')
  compare('bare+timeout', '/bare-timeout')
  compare('bare+timeout+header', '/bare-timeout-header')
  // CPU added per request, median of the per-round differences, read against the busy-wait.
  const added = (path: Path, to: Path) => median(cpuPer[path].map((value, i) => value - (cpuPer[to][i] as number)))
  const perMicro = added('/bare-busy', '/bare') / BUSY_MICROS
  console.log(
    `\nCalibration: a ${BUSY_MICROS} µs busy-wait adds ${added('/bare-busy', '/bare').toFixed(1)} µs of server CPU per request here (${perMicro.toFixed(1)} per µs of work).`,
  )
  for (const [label, to] of [
    ['bare fetch', '/bare'],
    ['bare fetch + timeout + header', '/bare-timeout-header'],
  ] as const) {
    const cpu = added('/client', to)
    console.log(`client over ${label}: +${cpu.toFixed(1)} µs of server CPU, the CPU of a ${(cpu / perMicro).toFixed(1)} µs busy-wait`)
  }

  // autocannon stops at its deadline with requests still in flight: let them finish before the
  // app (and its client's breaker, which cancels in-flight attempts) goes away.
  await new Promise((resolve) => setTimeout(resolve, 500))
  appChild.disconnect()
  upstreamChild.disconnect()
}

/**
 * Where the cost is: the same JSON call with a stub fetch (no network), so what
 * is left is the client itself. Median CPU time (user + system) of 8 interleaved
 * rounds of 20,000 sequential calls per variant.
 */
async function overhead(): Promise<void> {
  const body = '{"sku":"A-1","stock":42}'
  const stub = (async () => new Response(body, { headers: { 'content-type': 'application/json' } })) as typeof fetch
  const make = (options: object) =>
    createClient({ name: 'stub', baseUrl: 'http://stub', fetch: stub, registry: new Registry(), ...options })
  const plain = make({ breaker: false, propagate: false })
  const propagating = make({ breaker: false })
  const full = make({})
  // As in a request under deadline(): the client links every attempt to this deadline.
  const request = Deadline.after(3_600_000)
  const variants: Record<string, () => Promise<unknown>> = {
    'stub fetch + json()': async () => (await stub('http://stub/x')).json(),
    'client, no breaker, no header': () => plain.json('/x'),
    'client, no breaker': () => propagating.json('/x'),
    'client (breaker + header)': () => full.json('/x'),
    'client (breaker + header), in a Deadline': () => request.run(() => full.json('/x')),
  }
  const run = async (call: () => Promise<unknown>, n: number) => {
    const started = process.cpuUsage()
    for (let i = 0; i < n; i++) await call()
    const { user, system } = process.cpuUsage(started)
    return (user + system) / n
  }
  for (const call of Object.values(variants)) await run(call, 20_000)
  const rounds: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]))
  for (let round = 0; round < 8; round++) {
    for (const [name, call] of Object.entries(variants)) rounds[name]?.push(await run(call, 20_000))
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] as number
  console.log('\nPer-call CPU cost with a stub fetch (median of 8 rounds × 20,000 sequential calls):')
  const base = median(rounds['stub fetch + json()'] ?? [])
  for (const [name, values] of Object.entries(rounds)) {
    const us = median(values)
    console.log(`${name.padEnd(42)} ${us.toFixed(2)} µs  (+${(us - base).toFixed(2)} µs)`)
  }
  for (const client of [plain, propagating, full]) client[Symbol.dispose]()
  request[Symbol.dispose]()
}

if (process.argv[2] === 'serve') {
  serve(process.argv[3] as string).catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
} else {
  main()
    .then(overhead)
    .catch((error: unknown) => {
      console.error(error)
      process.exit(1)
    })
}
