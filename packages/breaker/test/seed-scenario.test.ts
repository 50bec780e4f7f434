import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { metricsHandler } from '@ballast/core'
import { Deadline } from '@ballast/deadline'
import express, { type NextFunction, type Request, type Response } from 'express'
import { Registry } from 'prom-client'
import { expect, it } from 'vitest'
import { Breaker } from '../src/breaker.js'

// The seed scenario end to end: an Express route calls a real flaky upstream on
// 127.0.0.1 through a Hystrix-style breaker (attempt timeout 800 ms, volume 20,
// 50 %, fallback to cached data, retry once while closed).

type Mode = 'healthy' | 'failing' | 'slow'

function listen(app: express.Express): Promise<{ server: Server; url: string }> {
  return new Promise((resolve, reject) => {
    const server = app.listen(0, '127.0.0.1', (error?: Error) => {
      if (error) reject(error)
      else resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    })
  })
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections()
  server.close()
  await once(server, 'close')
}

function promtool(exposition: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
    child.stdin.end(exposition)
  })
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  if (line === undefined) throw new Error(`series ${series} not found`)
  return Number(line.slice(series.length + 1))
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number
}

function resources(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1
  return counts
}

it('trips after the volume threshold, serves fallbacks fast while open, half-opens and closes; metrics tell the same story', async () => {
  const baseline = resources()

  // The flaky upstream.
  let mode: Mode = 'healthy'
  let upstreamHits = 0
  let upstreamAborted = 0
  const upstream = express()
  upstream.get('/stock/:sku', (req, res) => {
    upstreamHits++
    if (mode === 'failing') {
      res.status(500).json({ error: 'inventory database down' })
    } else if (mode === 'slow') {
      const timer = setTimeout(() => res.json({ sku: req.params.sku, stock: 7 }), 1_500)
      res.on('close', () => {
        if (!res.writableFinished) upstreamAborted++
        clearTimeout(timer)
      })
    } else {
      res.json({ sku: req.params.sku, stock: 7 })
    }
  })
  const up = await listen(upstream)

  // The service.
  const registry = new Registry()
  const inventory = new Breaker({
    name: 'inventory',
    timeout: 800,
    volumeThreshold: 20,
    errorThresholdPercentage: 50,
    resetTimeout: 1_000,
    retry: { attempts: 1 },
    registry,
  })
  const cache = new Map<string, number>([['A-1', 3]])
  const fallbackMs: number[] = []
  const transitions: string[] = []
  let hitsWhenOpened = -1
  inventory.onStateChange(({ to }) => transitions.push(to))
  inventory.onOpen(() => {
    hitsWhenOpened = upstreamHits
  })
  const halfOpened = new Promise<void>((resolve) => inventory.onHalfOpen(() => resolve()))

  const getStock = (sku: string) =>
    inventory.wrap(async ({ signal }) => {
      const response = await fetch(`${up.url}/stock/${sku}`, { signal })
      if (!response.ok) throw new Error(`inventory answered ${response.status}`)
      return ((await response.json()) as { stock: number }).stock
    })()

  const app = express()
  app.get('/metrics', metricsHandler(registry))
  app.get('/orders/:sku', async (req: Request<{ sku: string }>, res: Response, next: NextFunction) => {
    using deadline = Deadline.after(2_000)
    const started = performance.now()
    try {
      const stock = await deadline.run(() =>
        inventory.execute(
          async ({ signal }) => {
            const response = await fetch(`${up.url}/stock/${req.params.sku}`, { signal })
            if (!response.ok) throw new Error(`inventory answered ${response.status}`)
            return { stock: ((await response.json()) as { stock: number }).stock, source: 'upstream' }
          },
          {
            fallback: ({ reason }) => {
              if (reason === 'open') fallbackMs.push(performance.now() - started)
              return { stock: cache.get(req.params.sku) ?? 0, source: `cache:${reason}` }
            },
          },
        ),
      )
      res.json({ sku: req.params.sku, ...stock })
    } catch (error) {
      next(error)
    }
  })
  // No fallback: Express's default error handler answers from the error itself.
  app.get('/raw/:sku', async (req: Request<{ sku: string }>, res: Response, next: NextFunction) => {
    try {
      res.json({ stock: await getStock(req.params.sku) })
    } catch (error) {
      next(error)
    }
  })
  const svc = await listen(app)
  const order = async (sku = 'A-1') => {
    const response = await fetch(`${svc.url}/orders/${sku}`)
    return (await response.json()) as { stock: number; source: string }
  }

  try {
    // 1. Healthy: served by the upstream.
    for (let i = 0; i < 5; i++) expect(await order()).toEqual({ sku: 'A-1', stock: 7, source: 'upstream' })

    // 2. One slow request: both attempts time out at 800 ms, the upstream sees the aborts.
    mode = 'slow'
    const slowStarted = performance.now()
    expect(await order()).toEqual({ sku: 'A-1', stock: 3, source: 'cache:timeout' })
    const slowMs = performance.now() - slowStarted
    expect(slowMs).toBeGreaterThanOrEqual(1_500)
    expect(slowMs).toBeLessThan(1_990)
    await sleep(50)
    expect(upstreamAborted).toBe(2)

    // 3. Failing: every attempt counted; no trip before 20 calls in the window.
    mode = 'failing'
    let served = 0
    while (inventory.state === 'closed' && served < 30) {
      const body = await order()
      expect(body.source).toMatch(/^cache:(failure|open)$/)
      served++
    }
    expect(inventory.state).toBe('open')
    // 5 successes + 15 failures (2 timeouts, 13 errors): 15/20 = 75 % > 50 % at the 20th call.
    expect(hitsWhenOpened).toBe(20)
    const hitsAtOpen = upstreamHits

    // 4. Open: fallbacks, fast, without touching the upstream.
    const roundTrips: number[] = []
    for (let i = 0; i < 50; i++) {
      const started = performance.now()
      expect(await order()).toEqual({ sku: 'A-1', stock: 3, source: 'cache:open' })
      roundTrips.push(performance.now() - started)
    }
    expect(upstreamHits).toBe(hitsAtOpen)
    const raw = await fetch(`${svc.url}/raw/A-1`)
    expect(raw.status).toBe(503)
    expect(Number(raw.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    await raw.text()
    const inBreaker = { p50: percentile(fallbackMs, 50), p90: percentile(fallbackMs, 90), max: Math.max(...fallbackMs) }
    const roundTrip = { p50: percentile(roundTrips, 50), p90: percentile(roundTrips, 90), max: Math.max(...roundTrips) }
    console.log(
      `seed scenario, open-circuit fallback latency over ${fallbackMs.length} requests: ` +
        `in the route (execute → fallback) p50 ${inBreaker.p50.toFixed(3)} ms, p90 ${inBreaker.p90.toFixed(3)} ms, max ${inBreaker.max.toFixed(3)} ms; ` +
        `HTTP round trip p50 ${roundTrip.p50.toFixed(2)} ms, p90 ${roundTrip.p90.toFixed(2)} ms, max ${roundTrip.max.toFixed(2)} ms`,
    )
    // The bar is "under 5 ms"; the median holds it even on a loaded
    // 2-core machine (measured ~0.05 ms), the tail gets a generous bound.
    expect(inBreaker.p50).toBeLessThan(5)
    expect(inBreaker.p90).toBeLessThan(50)
    expect(roundTrip.p50).toBeLessThan(50)

    // 5. Half-open after resetTimeout; a good trial closes.
    mode = 'healthy'
    await halfOpened
    expect(inventory.state).toBe('half-open')
    expect(await order()).toEqual({ sku: 'A-1', stock: 7, source: 'upstream' })
    expect(inventory.state).toBe('closed')
    expect(transitions).toEqual(['open', 'half-open', 'closed'])

    // 6. The metrics tell the same story, and pass promtool.
    const scrape = await fetch(`${svc.url}/metrics`)
    const text = await scrape.text()
    const b = 'breaker="inventory"'
    expect(sample(text, `ballast_breaker_state{${b},state="closed"}`)).toBe(1)
    expect(sample(text, `ballast_breaker_state{${b},state="open"}`)).toBe(0)
    expect(sample(text, `ballast_breaker_transitions_total{${b},state="open"}`)).toBe(1)
    expect(sample(text, `ballast_breaker_transitions_total{${b},state="half_open"}`)).toBe(1)
    expect(sample(text, `ballast_breaker_transitions_total{${b},state="closed"}`)).toBe(1)
    expect(sample(text, `ballast_breaker_calls_total{${b},outcome="success"}`)).toBe(6)
    expect(sample(text, `ballast_breaker_calls_total{${b},outcome="timeout"}`)).toBe(2)
    expect(sample(text, `ballast_breaker_calls_total{${b},outcome="failure"}`)).toBe(13)
    const rejected = sample(text, `ballast_breaker_calls_total{${b},outcome="rejected"}`)
    expect(rejected).toBe(sample(text, `ballast_breaker_rejected_calls_total{${b},reason="open"}`))
    // 50 open-circuit orders + 1 raw call; the order that tripped the breaker failed (no retry once open), it was not refused.
    expect(rejected).toBe(51)
    expect(sample(text, `ballast_breaker_rejected_calls_total{${b},reason="half_open"}`)).toBe(0)
    // One retry for the slow order, one for each failing order but the one that tripped: 13 errors = 2 × 6 + 1.
    expect(served).toBe(7)
    expect(sample(text, `ballast_breaker_retries_total{${b}}`)).toBe(1 + 6)
    expect(sample(text, `ballast_breaker_fallbacks_total{${b},result="success"}`)).toBe(1 + served + 50)
    expect(sample(text, `ballast_breaker_failure_threshold_ratio{${b}}`)).toBe(0.5)
    expect(sample(text, `ballast_breaker_call_duration_seconds_count{${b},outcome="timeout"}`)).toBe(2)
    expect(sample(text, `ballast_breaker_concurrent_calls{${b}}`)).toBe(0)
    const check = await promtool(text)
    expect(check.output).toBe('')
    expect(check.code).toBe(0)
  } finally {
    inventory[Symbol.dispose]()
    await close(svc.server)
    await close(up.server)
  }

  // Handles back to baseline once everything is closed and disposed: no kind
  // of resource (sockets, servers, timers) above what was there before.
  const above = () => Object.entries(resources()).filter(([kind, count]) => count > (baseline[kind] ?? 0))
  for (let i = 0; i < 40 && above().length > 0; i++) await sleep(50)
  expect(above()).toEqual([])
})
