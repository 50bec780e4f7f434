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

describe('leaks', () => {
  it('active timers return to baseline after 10,000 requests', async () => {
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
    // Let start-up timers (module loading, the listen) finish before the baseline.
    await sleep(100)
    const baseline = activeTimers()
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
      await sleep(10)
      console.info(
        `[deadline] timers: baseline ${baseline}, peak ${peak} (${visible}/100 probes saw the inner deadline's timer), after load with clients open ${during}, after ${activeTimers()}`,
      )
      expect(ok).toBe(10_000)
      expect(visible).toBeGreaterThan(0)
      expect(activeTimers()).toBeLessThanOrEqual(baseline)
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

  it('200,000 deadlines linked to one long-lived parent leave < 2 MB of heap and no MaxListenersExceededWarning', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    const shutdown = new AbortController()
    const parent = Deadline.after(3_600_000)
    parent.signal.addEventListener('abort', () => {})
    try {
      // Warm up code paths and allocation sites before measuring.
      for (let i = 0; i < 5_000; i++) {
        Deadline.after(1_000, { signal: shutdown.signal })[Symbol.dispose]()
        parent.child(1_000)[Symbol.dispose]()
      }
      const before = settledHeap()
      for (let batch = 0; batch < 200; batch++) {
        // 1,000 alive at once, linked to the outside signal and to the parent deadline, as concurrent requests are.
        const live: Deadline[] = []
        for (let i = 0; i < 500; i++) {
          const linked = Deadline.after(1_000, { signal: shutdown.signal })
          linked.signal.addEventListener('abort', () => {})
          live.push(linked, parent.child(i % 2 === 0 ? 100 : 10_000_000))
        }
        for (const d of live) d[Symbol.dispose]()
        if (batch % 50 === 0) await sleep(0)
      }
      await sleep(10)
      const growth = settledHeap() - before
      console.info(`[deadline] heap growth after 200,000 linked deadlines: ${(growth / 1024).toFixed(1)} KiB`)
      expect(growth).toBeLessThan(2 * 1024 * 1024)
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
      // The links are really there: a parent abort reaches a fresh child.
      const child = parent.child(1_000)
      const linked = Deadline.after(1_000, { signal: shutdown.signal })
      parent.cancel()
      shutdown.abort()
      expect(child.expired).toBe(true)
      expect(linked.expired).toBe(true)
    } finally {
      process.off('warning', onWarning)
      parent[Symbol.dispose]()
    }
  })
})
