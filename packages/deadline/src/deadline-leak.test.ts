import { getEventListeners, setMaxListeners } from 'node:events'
import { request as httpRequest } from 'node:http'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import express from 'express'
import { Registry } from 'prom-client'
import { Client } from 'undici'
import { describe, expect, it } from 'vitest'
import { Deadline, withDeadline } from './deadline.js'
import { deadline } from './deadline-middleware.js'
import { activeTimers, listen, sleep } from './test-helpers.js'

// A real GC in this file's own forked process, without a flag on the whole test run.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function settledHeap(): number {
  for (let i = 0; i < 4; i++) gc()
  return process.memoryUsage().heapUsed
}

/**
 * Active timers once transient ones have ended. Other code of the process holds a
 * `Timeout` for a while now and then: at the start of a test the runner's own
 * (seen here for up to ~250 ms on a loaded machine), so a single sample, or the
 * least of a fixed short window, may count one that is not ours. Samples until
 * the count is 0 (no lower count exists), or for at most 2 s, after a settle.
 */
async function steadyTimers(): Promise<{ count: number; waited: number }> {
  const started = performance.now()
  await sleep(50)
  let least = activeTimers()
  for (let waited = 0; least > 0 && waited < 2_000; waited += 10) {
    await sleep(10)
    least = Math.min(least, activeTimers())
  }
  return { count: least, waited: Math.round(performance.now() - started) }
}

/**
 * True when a deadline of `ms` arms its queue's timer: the queue of that delay
 * holds no deadline (its timer is unref'd, or gone). A queue still holding one
 * (a request's deadline never disposed) has its timer ref'd already, so one more
 * deadline adds no active timer. Synchronous reads: nothing else can start or end
 * a timer in between, whatever else the process is doing.
 */
function queueIdle(ms: number): boolean {
  const before = activeTimers()
  const probe = Deadline.after(ms)
  const armed = activeTimers()
  probe[Symbol.dispose]()
  const after = activeTimers()
  expect(after).toBe(before)
  return armed === before + 1
}

describe('leaks', () => {
  it('active timers return to baseline after 10,000 requests, and no deadline is left in a timer queue', async () => {
    const app = express()
    app.use(deadline({ timeout: 5_000, registry: new Registry() }))
    let peak = 0
    let visible = 0
    app.get('/work/:id', async (req, res) => {
      const probe = Number(req.params.id) % 100 === 0
      const outside = probe ? activeTimers() : 0
      if (probe) peak = Math.max(peak, outside)
      const value = await withDeadline(1_000, async (signal) => {
        // The probe sees a deadline's timer while it is armed, so the final count means something.
        if (probe && activeTimers() === outside + 1) visible++
        return signal.aborted ? -1 : Number(req.params.id)
      })
      res.json({ value })
    })
    const server = await listen(app as never)
    // Start-up timers (module loading, the listen) end within the settle.
    const { count: baseline, waited: settled } = await steadyTimers()
    // The request deadlines (5,000 ms) and the handler's (1,000 ms) have queues of their own delay.
    expect(queueIdle(5_000)).toBe(true)
    expect(queueIdle(1_000)).toBe(true)
    const clients = Array.from({ length: 10 }, () => new Client(server.origin, { pipelining: 1 }))
    let ok = 0
    try {
      await Promise.all(
        clients.map(async (client) => {
          for (let i = 0; i < 1_000; i++) {
            const res = await client.request({ path: `/work/${i}`, method: 'GET' })
            await res.body.json()
            if (res.statusCode === 200) ok++
          }
        }),
      )
      const during = activeTimers()
      await Promise.all(clients.map((client) => client.close()))
      const { count: after, waited } = await steadyTimers()
      // Each of these alone fails if a single request deadline (of either delay) stays queued.
      const idle = { request: queueIdle(5_000), handler: queueIdle(1_000) }
      console.info(
        `[deadline] timers: baseline ${baseline} (settled in ${settled} ms), peak ${peak} (${visible}/100 probes saw the inner deadline's timer), after load with clients open ${during}, after ${after} (settled in ${waited} ms), queues idle ${JSON.stringify(idle)}`,
      )
      expect(ok).toBe(10_000)
      expect(visible).toBeGreaterThan(0)
      expect(idle).toEqual({ request: true, handler: true })
      expect(after).toBe(baseline)
    } finally {
      await server.close()
    }
  })

  it("a request's deadline kept after its response closed does not keep the request alive", async () => {
    const app = express()
    app.use(deadline({ timeout: 60_000, registry: new Registry() }))
    // What outlives a request in real code: its deadline, held by a timer queue, a
    // cache or a closure. It must not hold the request's objects with it.
    const kept: Deadline[] = []
    const requests: WeakRef<object>[] = []
    app.get('/r', (req, res) => {
      kept.push(req.deadline as Deadline)
      requests.push(new WeakRef(req))
      res.json({ ok: true })
    })
    const server = await listen(app as never)
    const client = new Client(server.origin, { pipelining: 1 })
    try {
      for (let i = 0; i < 20; i++) await (await client.request({ path: '/r', method: 'GET' })).body.json()
      await client.close()
      await sleep(20)
      gc()
      await sleep(0)
      gc()
      expect(kept).toHaveLength(20)
      expect(requests.filter((ref) => ref.deref() !== undefined)).toHaveLength(0)
    } finally {
      await server.close()
    }
  })

  it('200,000 deadlines linked to one long-lived signal carry one listener on it, leave < 2 MB of heap and no MaxListenersExceededWarning', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    const shutdown = new AbortController()
    // An AbortSignal has no listener limit by default, so no warning could ever fire:
    // give both long-lived signals an EventTarget's usual limit.
    setMaxListeners(10, shutdown.signal)
    const parent = Deadline.after(3_600_000)
    parent.signal.addEventListener('abort', () => {})
    setMaxListeners(10, parent.signal)
    try {
      // Warm up code paths and allocation sites before measuring.
      for (let i = 0; i < 5_000; i++) {
        Deadline.after(1_000, { signal: shutdown.signal })[Symbol.dispose]()
        parent.child(1_000)[Symbol.dispose]()
      }
      const before = settledHeap()
      // All alive at once, as that many concurrent requests would be: 200,000 linked to the
      // outside signal (one in 10 with its own signal created, as a request passing it to
      // fetch), and 100,000 children of the parent deadline, half clipped to its end.
      let linked: Deadline[] = []
      for (let i = 0; i < 200_000; i++) {
        const deadline = Deadline.after(1_000, { signal: shutdown.signal })
        if (i % 10 === 0) deadline.signal.addEventListener('abort', () => {})
        linked.push(deadline)
        // Also along the way: with a listener per deadline, each add would walk all the
        // others (EventTarget refuses duplicates) and the loop would run for minutes.
        if (i % 20_000 === 0) expect(getEventListeners(shutdown.signal, 'abort').length).toBe(1)
      }
      let children: Deadline[] = []
      for (let i = 0; i < 100_000; i++) children.push(parent.child(i % 2 === 0 ? 60_000 : 10_000_000))
      const peak = { outside: getEventListeners(shutdown.signal, 'abort').length, parent: getEventListeners(parent.signal, 'abort').length }
      for (const deadline of linked) deadline[Symbol.dispose]()
      for (const deadline of children) deadline[Symbol.dispose]()
      linked = []
      children = []
      await sleep(10)
      const growth = settledHeap() - before
      console.info(
        `[deadline] heap growth after 200,000 deadlines linked to a signal and 100,000 to a parent: ${(growth / 1024).toFixed(1)} KiB; abort listeners at peak ${JSON.stringify(peak)}`,
      )
      // Ours on the outside signal, the test's own on the parent's: the links add no listener each.
      expect(peak).toEqual({ outside: 1, parent: 1 })
      // Removed with the last linked deadline.
      expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0)
      expect(growth).toBeLessThan(2 * 1024 * 1024)
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
      // The links are really there: a parent abort reaches a fresh child.
      const child = parent.child(1_000)
      const fresh = Deadline.after(1_000, { signal: shutdown.signal })
      parent.cancel()
      shutdown.abort()
      expect(child.expired).toBe(true)
      expect(fresh.expired).toBe(true)
    } finally {
      process.off('warning', onWarning)
      parent[Symbol.dispose]()
    }
  })
})

const handles = () => process.getActiveResourcesInfo().filter((k) => k === 'Timeout' || k === 'TCPSocketWrap' || k === 'TCPWRAP').length

describe('leaks under mixed traffic', () => {
  it('handles back to baseline, no warnings, after 504s, client aborts and successes', async () => {
    const warnings: Error[] = []
    const onWarning = (w: Error) => warnings.push(w)
    process.on('warning', onWarning)
    const app = express()
    app.set('env', 'test')
    app.use(deadline({ timeout: 60, registry: new Registry() }))
    app.get('/ok', async (_req, res) => {
      res.json({ v: await withDeadline(1_000, async () => 1) })
    })
    app.get('/slow', async (_req, res) => {
      await withDeadline(
        5_000,
        (signal) =>
          new Promise((resolve) => {
            const t = setTimeout(resolve, 200)
            signal.addEventListener(
              'abort',
              () => {
                clearTimeout(t)
                resolve(0)
              },
              { once: true },
            )
          }),
      )
      res.json({ late: true })
    })
    app.get('/hang', (_req, res) => {
      Deadline.current()?.signal.addEventListener('abort', () => res.destroy(), { once: true })
    })
    const server = await listen(app as never)
    await sleep(100)
    const baseline = handles()
    const one = (path: string, abortAfter?: number) =>
      new Promise<void>((resolve) => {
        const req = httpRequest(`${server.origin}${path}`, { agent: false }, (res) => {
          res.resume()
          res.on('end', resolve)
          res.on('error', () => resolve())
        })
        req.on('error', () => resolve())
        if (abortAfter !== undefined)
          setTimeout(() => {
            req.destroy()
            resolve()
          }, abortAfter)
        req.end()
      })
    for (let round = 0; round < 20; round++) {
      await Promise.all([one('/ok'), one('/ok'), one('/slow'), one('/hang', 10), one('/slow', 20), one('/nope')])
    }
    let after = handles()
    for (let i = 0; i < 100 && after > baseline; i++) {
      await sleep(50)
      after = handles()
    }
    process.off('warning', onWarning)
    expect(after).toBeLessThanOrEqual(baseline)
    expect(warnings.map((w) => w.name)).toEqual([])
    await server.close()
  })
})
