// Throughput of an Express 5 app with the `deadline()` middleware against the
// same app bare, and against connect-timeout for reference, measured in the same
// run, in interleaved rounds. Two more apps show the floor any per-request
// deadline middleware stands on: `empty-middleware` (one `app.use` that only calls
// `next()`: what Express charges for a layer) and `als-close` (an empty
// middleware that enters an AsyncLocalStorage for the chain and listens for the
// response's 'close', the two things implicit propagation and client-disconnect
// cancellation cannot do without). `hand-rolled` is the middleware users write
// themselves: an AbortController, a setTimeout answering 504, a 'close' listener
// clearing it, the signal in an AsyncLocalStorage; it has no metrics, no header,
// no late-write protection. A calibration app, an `app.use` that
// busy-waits 1 µs, shows what work of a known size scores in this harness; with
// `empty-middleware` as its 0 µs point, the report maps each app's added CPU onto
// that scale (overhead-http.ts has a 4 µs point on its own route).
//
//   node --experimental-strip-types benchmarks/deadline-http.ts
//
// Bounded: 6 rounds × 7 apps × (3 s warm-up + 2 s measured) with 20
// keep-alive connections (~230 s). Each app runs in a child process of its own,
// started afresh for every round (one core for the app, autocannon in this
// process); the round order rotates so no app always
// goes first. The route answers a small JSON body at once, so what is measured is
// the per-request overhead: deadline() queues and removes one timer entry, creates the
// request's Deadline, sets AsyncLocalStorage for the chain, reads the header and
// counts metrics. Reported: median req/s per app and the median of the per-round
// ratios app / bare (target for deadline() >= 0.97), and, because req/s on a
// shared machine moves with whatever else runs, the server's CPU time per request
// (user + system, from the app process) and its ratio bare / app, which is what
// the req/s ratio would be on a dedicated core.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
type Result = { requests: { average: number }; non2xx: number; errors: number; timeouts: number }
// Loaded by the load generator only: the app processes must not pay for its start-up
// (it inflates a WebAssembly module), whose garbage would be collected during a round.
const autocannon = (options: object): Promise<Result> => (require('autocannon') as (options: object) => Promise<Result>)(options)

const ROUNDS = 6
const DURATION = 2
const WARMUP = 3
const CONNECTIONS = 20
const APPS = ['bare', 'empty-middleware', 'busy-1us', 'als-close', 'deadline', 'hand-rolled', 'connect-timeout'] as const
// The calibration apps and the µs each busy-waits; `empty-middleware` is the same layer waiting 0 µs.
const CALIBRATION: readonly (readonly [App, number])[] = [
  ['empty-middleware', 0],
  ['busy-1us', 1],
]
type App = (typeof APPS)[number]

async function serve(kind: App): Promise<void> {
  const { default: express } = await import('express')
  const app = express()
  if (kind === 'deadline') {
    const { deadline } = await import('@ballast/deadline')
    const { Registry } = await import('prom-client')
    app.use(deadline({ timeout: 2_000, registry: new Registry() }))
  } else if (kind === 'empty-middleware') {
    app.use((_req, _res, next) => next())
  } else if (kind === 'busy-1us') {
    const { busyWait } = await import('./_lib/busy.ts')
    app.use((_req, _res, next) => {
      busyWait(1)
      next()
    })
  } else if (kind === 'als-close') {
    const { AsyncLocalStorage } = await import('node:async_hooks')
    const storage = new AsyncLocalStorage<object>()
    const onClose = () => {}
    app.use((req, res, next) => {
      res.on('close', onClose)
      storage.run(req, next)
    })
  } else if (kind === 'hand-rolled') {
    const { AsyncLocalStorage } = await import('node:async_hooks')
    const storage = new AsyncLocalStorage<AbortSignal>()
    app.use((_req, res, next) => {
      const controller = new AbortController()
      const timer = setTimeout(() => {
        controller.abort()
        if (!res.headersSent) res.status(504).json({ error: 'timeout' })
      }, 2_000)
      res.on('close', () => {
        clearTimeout(timer)
        if (!res.writableFinished) controller.abort()
      })
      storage.run(controller.signal, next)
    })
  } else if (kind === 'connect-timeout') {
    const timeout = require('connect-timeout') as (time: string) => import('express').RequestHandler
    app.use(timeout('2s'))
  }
  app.get('/orders/:id', (req, res) => {
    res.json({ id: req.params.id, status: 'shipped' })
  })
  const server = app.listen(0, '127.0.0.1')
  server.keepAliveTimeout = 60_000
  await once(server, 'listening')
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`)
  process.on('message', () => {
    const { user, system } = process.cpuUsage()
    process.send?.(user + system)
  })
  process.on('disconnect', () => process.exit(0))
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

async function main(): Promise<void> {
  const mode = process.argv[2]
  if (mode === 'serve') return serve(process.argv[3] as App)

  // A fresh process per app and round: one process's JIT and heap layout can sit a
  // couple of µs per request above or below another's for its whole life, so one
  // process per app for the whole run would hand that luck to every round. The
  // warm-up is long enough for the optimizing compiler to be done (after 1 s,
  // background compilation still showed in the measured CPU time).
  const start = async (kind: App) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), 'serve', kind], {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    })
    const [chunk] = (await once(child.stdout, 'data')) as [Buffer]
    const cpu = async () => {
      child.send('cpu')
      const [micros] = (await once(child, 'message')) as [number]
      return micros
    }
    const stop = async () => {
      const exited = once(child, 'exit')
      child.disconnect()
      await exited
    }
    return { url: `http://127.0.0.1:${chunk.toString().trim()}/orders/42`, stop, cpu }
  }
  const rps = new Map<App, number[]>(APPS.map((kind) => [kind, []]))
  const ratios = new Map<App, number[]>(APPS.map((kind) => [kind, []]))
  const cpuPerRequest = new Map<App, number[]>(APPS.map((kind) => [kind, []]))
  const cpuRatios = new Map<App, number[]>(APPS.map((kind) => [kind, []]))
  const cpuAdded = new Map<App, number[]>(APPS.map((kind) => [kind, []]))
  for (let round = 1; round <= ROUNDS; round++) {
    const order = APPS.map((_, i) => APPS[(i + round) % APPS.length] as App)
    const thisRound = new Map<App, number>()
    const thisCpu = new Map<App, number>()
    for (const kind of order) {
      const app = await start(kind)
      let result: Result & { requests: { total: number } }
      let cpuBefore: number
      let cpuAfter: number
      try {
        await autocannon({ url: app.url, connections: CONNECTIONS, duration: WARMUP })
        cpuBefore = await app.cpu()
        result = (await autocannon({ url: app.url, connections: CONNECTIONS, duration: DURATION })) as typeof result
        cpuAfter = await app.cpu()
      } finally {
        await app.stop()
      }
      if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) throw new Error(`${kind}: ${JSON.stringify(result)}`)
      thisRound.set(kind, result.requests.average)
      thisCpu.set(kind, (cpuAfter - cpuBefore) / result.requests.total)
    }
    const bare = thisRound.get('bare') as number
    for (const [kind, value] of thisRound) {
      rps.get(kind)?.push(value)
      ratios.get(kind)?.push(value / bare)
      cpuPerRequest.get(kind)?.push(thisCpu.get(kind) as number)
      cpuRatios.get(kind)?.push((thisCpu.get('bare') as number) / (thisCpu.get(kind) as number))
      cpuAdded.get(kind)?.push((thisCpu.get(kind) as number) - (thisCpu.get('bare') as number))
    }
    console.error(`round ${round}: ${order.map((kind) => `${kind} ${thisRound.get(kind)?.toFixed(0)}`).join(', ')}`)
  }
  console.log(`node ${process.version}, express 5, ${ROUNDS} rounds × ${DURATION} s × ${CONNECTIONS} connections`)
  console.log(
    '| app | median req/s | median req/s ratio to bare | server CPU µs/request | CPU µs added to bare | median CPU ratio bare / app |',
  )
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const kind of APPS) {
    const cells = [
      median(rps.get(kind) ?? []).toFixed(0),
      median(ratios.get(kind) ?? []).toFixed(3),
      median(cpuPerRequest.get(kind) ?? []).toFixed(1),
      median(cpuAdded.get(kind) ?? []).toFixed(1),
      median(cpuRatios.get(kind) ?? []).toFixed(3),
    ]
    console.log(`| ${kind} | ${cells.join(' | ')} |`)
  }
  const added = (kind: App) => median(cpuAdded.get(kind) ?? [])
  const scale = CALIBRATION.map(([kind, micros]) => [micros, added(kind)] as const)
  console.log(
    `\nCalibration: an app.use that busy-waits ${scale.map(([micros, cpu]) => `${micros} µs adds ${cpu.toFixed(1)}`).join(', ')} µs of server CPU per request here.`,
  )
  for (const kind of ['als-close', 'deadline', 'hand-rolled', 'connect-timeout'] as const) {
    console.log(`${kind}: adds the CPU of a ${busyEquivalent(added(kind), scale).toFixed(1)} µs busy-wait`)
  }
}

/** The busy-wait whose added CPU equals `cpu`, read off the calibration points (straight lines between them, and beyond the last). */
function busyEquivalent(cpu: number, scale: readonly (readonly [number, number])[]): number {
  for (let i = 1; i < scale.length; i++) {
    const [x0, y0] = scale[i - 1] as readonly [number, number]
    const [x1, y1] = scale[i] as readonly [number, number]
    if (cpu <= y1 || i === scale.length - 1) return y1 === y0 ? x1 : Math.max(0, x0 + ((cpu - y0) * (x1 - x0)) / (y1 - y0))
  }
  return Number.NaN
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
