import { once } from 'node:events'
import { request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { ClientClosedError, Deadline, deadline } from '@ballast/deadline'
import express, { type NextFunction, type Request, type Response } from 'express'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type Client, createClient } from './index.js'
import { activeResources, backToBaseline } from './test-support.js'

// Three services on loopback, A → B → C, each an Express app with ballast's
// deadline() middleware calling the next one through this client. A's route
// has a 300 ms deadline; B and C would give 5 s on their own. The header is
// relative, so each hop's transit time is unaccounted for by the callee: the
// client's `margin` absorbs it. On a loaded 2-core machine a loopback hop can
// take 5-25 ms, so the clients here keep 50 ms back (the default is 10 ms).

interface Seen {
  header: number
  at: number
  signalAbortedAt?: number
  reason?: unknown
  socketClosedAt?: number
}

const seen: Record<'b' | 'c', Seen[]> = { b: [], c: [] }
/** At the moment each client hands the request to fetch: the header it sends and what A has left. */
const sent: { to: string; header: number; aLeft: number; senderLeft: number }[] = []

function spying(to: string): typeof fetch {
  return (input, init) => {
    const header = Number(new Headers(init?.headers).get('request-timeout-ms'))
    sent.push({ to, header, aLeft: aDeadlineEnd - performance.now(), senderLeft: Deadline.current()?.remaining() ?? Number.NaN })
    return fetch(input, init)
  }
}
let aDeadlineEnd = 0
const servers: Server[] = []
const clients: Client[] = []
let aUrl = ''
let baseline: string[]

async function listen(app: express.Express): Promise<string> {
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  servers.push(server)
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function record(service: 'b' | 'c', req: Request): Seen {
  const entry: Seen = { header: Number(req.headers['request-timeout-ms']), at: performance.now() }
  seen[service].push(entry)
  // Deadline.current() is the request's deadline, set by the middleware for the handler.
  const signal = Deadline.current()?.signal
  signal?.addEventListener('abort', () => {
    entry.signalAbortedAt = performance.now()
    entry.reason = signal.reason
  })
  req.socket.once('close', () => {
    entry.socketClosedAt = performance.now()
  })
  return entry
}

// Errors after the client left go nowhere; the deadline middleware drops the late write.
const quiet = (_error: unknown, _req: Request, res: Response, _next: NextFunction) => {
  if (!res.headersSent) res.status(502).end()
}

beforeAll(async () => {
  baseline = activeResources()
  const registry = new Registry()

  const c = express()
  c.use(deadline({ timeout: 5_000, registry }))
  c.get('/c', (req, res) => {
    record('c', req)
    res.json({ service: 'c' })
  })
  c.get('/c-hang', async (req) => {
    record('c', req)
    // Works until told to stop: the signal is the only way out.
    await new Promise((resolve) => Deadline.current()?.signal.addEventListener('abort', resolve))
  })
  c.use(quiet)
  const cUrl = await listen(c)

  const toC = createClient({ name: 'c', baseUrl: cUrl, registry, timeout: 5_000, fetch: spying('c'), propagate: { margin: 50 } })
  const b = express()
  b.use(deadline({ timeout: 5_000, registry }))
  b.get('/b', async (req, res) => {
    record('b', req)
    res.json(await toC.json('/c'))
  })
  b.get('/b-hang', async (req, res) => {
    record('b', req)
    const response = await toC.fetch('/c-hang')
    res.status(response.status).send(await response.text())
  })
  b.use(quiet)
  const bUrl = await listen(b)

  const toB = createClient({ name: 'b', baseUrl: bUrl, registry, timeout: 5_000, fetch: spying('b'), propagate: { margin: 50 } })
  const a = express()
  a.use(deadline({ timeout: 5_000, registry }))
  a.get('/a', deadline({ timeout: 300, registry }), async (_req, res) => {
    aDeadlineEnd = performance.now() + (Deadline.current()?.remaining() ?? 0)
    res.json(await toB.json('/b'))
  })
  a.get('/a-hang', deadline({ timeout: 300, registry }), async (_req, res) => {
    aDeadlineEnd = performance.now() + (Deadline.current()?.remaining() ?? 0)
    const response = await toB.fetch('/b-hang')
    res.status(response.status).send(await response.text())
  })
  a.use(quiet)
  aUrl = await listen(a)
  clients.push(toB, toC)
})

afterAll(async () => {
  for (const client of clients) client[Symbol.dispose]()
  for (const server of servers) {
    server.closeAllConnections()
    server.close()
    await once(server, 'close')
  }
  expect(await backToBaseline(baseline)).toEqual([])
})

it("A's 300 ms route deadline reaches C as a header no larger than A's remaining budget", async () => {
  const response = await fetch(`${aUrl}/a`)
  expect(response.status).toBe(200)
  expect(await response.json()).toEqual({ service: 'c' })
  const atB = seen.b.at(-1) as Seen
  const atC = seen.c.at(-1) as Seen
  const toB = sent.findLast((entry) => entry.to === 'b') as (typeof sent)[number]
  const toC = sent.findLast((entry) => entry.to === 'c') as (typeof sent)[number]
  // Each client sends no more than its own request's deadline leaves at send time...
  expect(toB.header).toBeLessThanOrEqual(Math.floor(toB.senderLeft))
  expect(toC.header).toBeLessThanOrEqual(Math.floor(toC.senderLeft))
  // ...so what each hop is told never exceeds what A has left at the moment it is sent...
  expect(toB.header).toBeGreaterThan(0)
  expect(toB.header).toBeLessThanOrEqual(Math.floor(toB.aLeft))
  expect(toC.header).toBeGreaterThan(0)
  expect(toC.header).toBeLessThanOrEqual(Math.floor(toC.aLeft))
  // ...and is what arrives: C gets less than B, B less than A's 300 ms.
  expect(atB.header).toBe(toB.header)
  expect(atC.header).toBe(toC.header)
  expect(atC.header).toBeLessThan(atB.header)
  expect(atB.header).toBeLessThan(300)
  console.log(
    `A had ${toB.aLeft.toFixed(1)} ms left when B was called (header ${toB.header}; ${(aDeadlineEnd - atB.at).toFixed(1)} ms on arrival), ` +
      `${toC.aLeft.toFixed(1)} ms when C was called (header ${toC.header}; ${(aDeadlineEnd - atC.at).toFixed(1)} ms on arrival)`,
  )
})

interface Disconnect {
  /** How long after the hang-up B's and C's signals aborted and C's socket closed, in ms. */
  bSignalMs: number
  cSignalMs: number
  cSocketMs: number
  /** How long before A's 300 ms deadline the hang-up and the close of C's socket came. */
  hangUpBeforeDeadlineMs: number
  cSocketBeforeDeadlineMs: number
  bReason: unknown
  cReason: unknown
}

/** One hang-up at A while the call hangs in C: what happened, and when. */
async function disconnectOnce(): Promise<Disconnect> {
  const before = seen.c.length
  const req = request(`${aUrl}/a-hang`, { agent: false })
  req.on('error', () => undefined)
  req.end()
  // Wait until the call has reached C, then hang up as a client would.
  await expect.poll(() => seen.c.length, { timeout: 2_000, interval: 5 }).toBe(before + 1)
  const atB = seen.b.at(-1) as Seen
  const atC = seen.c.at(-1) as Seen
  const hungUpAt = performance.now()
  req.destroy()
  await expect.poll(() => atC.socketClosedAt, { timeout: 2_000, interval: 2 }).toBeDefined()
  // A signal that never aborts reads as Infinity, so that the assertions below say which one.
  for (let waited = 0; (atB.signalAbortedAt === undefined || atC.signalAbortedAt === undefined) && waited < 1_000; waited += 5) {
    await sleep(5)
  }
  return {
    bSignalMs: (atB.signalAbortedAt ?? Number.POSITIVE_INFINITY) - hungUpAt,
    cSignalMs: (atC.signalAbortedAt ?? Number.POSITIVE_INFINITY) - hungUpAt,
    cSocketMs: (atC.socketClosedAt as number) - hungUpAt,
    hangUpBeforeDeadlineMs: aDeadlineEnd - hungUpAt,
    cSocketBeforeDeadlineMs: aDeadlineEnd - (atC.socketClosedAt as number),
    bReason: atB.reason,
    cReason: atC.reason,
  }
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.floor(sorted.length / 2)] as number
}

it("A's client disconnecting aborts B's and C's signals and closes C's socket within 50 ms", async () => {
  // The bound is 50 ms. One hang-up on a shared 2-core machine can be stalled by another
  // process or a GC for longer than that, so a single sample would make the test flaky, and a wide
  // bound on one sample (the 150 ms this test used to assert) cannot catch a propagation that lost
  // 100 ms. The hang-up is repeated and the median is held to 50 ms: one or two stalled runs do
  // not move it, a systematic delay moves every run and does.
  const runs: Disconnect[] = []
  for (let n = 0; n < 7; n++) runs.push(await disconnectOnce())
  const show = (pick: (run: Disconnect) => number) => runs.map((run) => pick(run).toFixed(1)).join(' ')
  console.log(
    `disconnect → B signal [${show((run) => run.bSignalMs)}] ms, C signal [${show((run) => run.cSignalMs)}] ms, ` +
      `C socket closed [${show((run) => run.cSocketMs)}] ms`,
  )
  expect(median(runs.map((run) => run.cSocketMs))).toBeLessThan(50)
  expect(median(runs.map((run) => run.cSignalMs))).toBeLessThan(50)
  expect(median(runs.map((run) => run.bSignalMs))).toBeLessThan(50)
  for (const run of runs) {
    // The client's disconnect, not the 300 ms deadline, is what stopped them, every time.
    expect(run.hangUpBeforeDeadlineMs).toBeGreaterThan(0)
    expect(run.cSocketBeforeDeadlineMs).toBeGreaterThan(0)
    expect(run.bReason).toBeInstanceOf(ClientClosedError)
    expect(run.cReason).toBeInstanceOf(ClientClosedError)
  }
})
