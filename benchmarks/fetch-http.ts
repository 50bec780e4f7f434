// Throughput of an Express route making one outbound call through a
// @ballast/fetch client (breaker, per-attempt budget, propagation header,
// covered body read, metrics) against the same route calling bare `fetch`, and
// bare `fetch` with a hand-written 1 s timeout, measured in the same run, in
// interleaved rounds.
//
//   node --experimental-strip-types benchmarks/fetch-http.ts
//
// Bounded: a 2 s warm-up per route + 12 measured rounds × 3 routes × 2 s with
// 20 connections (~80 s), then ~10 s of stub calls. Many short rounds with the
// order rotated, because the machine is shared: the median of per-round ratios
// resists a noisy neighbour. The upstream runs in a child process so that it is
// the same for every route; autocannon and the Express app share this one.
// Reported: req/s per route (median over rounds), the median of the per-round
// ratios client / bare (target >= 0.95) and client / bare-with-timeout; then the
// per-call cost of the client with a stub fetch, to show where the time goes.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { createClient } from '@ballast/fetch'
import express from 'express'
import { Registry } from 'prom-client'

const require = createRequire(import.meta.url)
const autocannon = require('autocannon') as (options: object) => Promise<{ requests: { average: number }; non2xx: number; errors: number }>

const ROUNDS = 12
const DURATION = 2
const CONNECTIONS = 20

const upstreamSource = `
const http = require('node:http')
const body = JSON.stringify({ sku: 'A-1', stock: 42, warehouse: 'east' })
const server = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }); res.end(body) })
server.keepAliveTimeout = 60000
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'))
process.on('disconnect', () => process.exit(0))
`

async function main(): Promise<void> {
  const child = spawn(process.execPath, ['-e', upstreamSource], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
  const [chunk] = (await once(child.stdout, 'data')) as [Buffer]
  const upstream = `http://127.0.0.1:${chunk.toString().trim()}`

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
  app.get('/client', async (_req, res, next) => {
    try {
      res.json(await client.json('/stock/A-1'))
    } catch (error) {
      next(error)
    }
  })
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  async function round(path: string, duration: number): Promise<number> {
    const result = await autocannon({ url: `${base}${path}`, connections: CONNECTIONS, duration })
    if (result.non2xx !== 0 || result.errors !== 0) throw new Error(`${path}: ${result.non2xx} non-2xx, ${result.errors} errors`)
    return result.requests.average
  }

  const paths = ['/bare', '/bare-timeout', '/client'] as const
  for (const path of paths) await round(path, 2)
  const rps: Record<(typeof paths)[number], number[]> = { '/bare': [], '/bare-timeout': [], '/client': [] }
  const ratios: number[] = []
  const timeoutRatios: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    // Rotate which route goes first so drift (other load, JIT) hits all alike.
    const order = [...paths.slice(i % 3), ...paths.slice(0, i % 3)]
    const result: Record<string, number> = {}
    for (const path of order) result[path] = await round(path, DURATION)
    for (const path of paths) rps[path].push(result[path] as number)
    ratios.push((result['/client'] as number) / (result['/bare'] as number))
    timeoutRatios.push((result['/client'] as number) / (result['/bare-timeout'] as number))
    console.log(`round ${i + 1}: ${paths.map((path) => `${path} ${Math.round(result[path] as number)}`).join(', ')} req/s`)
  }
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b)
    const mid = sorted.length >> 1
    return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
  }
  const spread = (values: number[]) => `min ${Math.min(...values).toFixed(3)}, max ${Math.max(...values).toFixed(3)}`
  console.log(`\nExpress route + one outbound call, ${CONNECTIONS} connections, ${ROUNDS} × ${DURATION} s rounds (node ${process.version})`)
  console.log(`bare fetch                 ${Math.round(median(rps['/bare']))} req/s (median)`)
  console.log(`bare fetch + 1 s timeout   ${Math.round(median(rps['/bare-timeout']))} req/s (median)`)
  console.log(`@ballast/fetch             ${Math.round(median(rps['/client']))} req/s (median)`)
  console.log(`ratio client/bare          ${median(ratios).toFixed(3)} (median of per-round ratios; ${spread(ratios)})`)
  console.log(`ratio client/bare+timeout  ${median(timeoutRatios).toFixed(3)} (median of per-round ratios; ${spread(timeoutRatios)})`)

  // autocannon stops at its deadline with requests still in flight: let them finish before the
  // client (and its breaker, which cancels in-flight attempts) is disposed.
  server.close()
  server.closeIdleConnections()
  await new Promise((resolve) => setTimeout(resolve, 500))
  server.closeAllConnections()
  client[Symbol.dispose]()
  child.disconnect()
  child.kill()
}

/**
 * Where the cost is: the same JSON call with a stub fetch (no network), so what
 * is left is the client itself. Best of 8 interleaved rounds of 20,000
 * sequential calls per variant (the minimum resists a noisy neighbour).
 */
async function overhead(): Promise<void> {
  const body = '{"sku":"A-1","stock":42}'
  const stub = (async () => new Response(body, { headers: { 'content-type': 'application/json' } })) as typeof fetch
  const make = (options: object) =>
    createClient({ name: 'stub', baseUrl: 'http://stub', fetch: stub, registry: new Registry(), ...options })
  const plain = make({ breaker: false, propagate: false })
  const propagating = make({ breaker: false })
  const full = make({})
  const variants: Record<string, () => Promise<unknown>> = {
    'stub fetch + json()': async () => (await stub('http://stub/x')).json(),
    'client, no breaker, no header': () => plain.json('/x'),
    'client, no breaker': () => propagating.json('/x'),
    'client (breaker + header)': () => full.json('/x'),
  }
  const run = async (call: () => Promise<unknown>, n: number) => {
    const started = performance.now()
    for (let i = 0; i < n; i++) await call()
    return ((performance.now() - started) * 1000) / n
  }
  for (const call of Object.values(variants)) await run(call, 20_000)
  const best: Record<string, number> = {}
  for (let round = 0; round < 8; round++) {
    for (const [name, call] of Object.entries(variants))
      best[name] = Math.min(best[name] ?? Number.POSITIVE_INFINITY, await run(call, 20_000))
  }
  console.log('\nPer-call cost with a stub fetch (best of 8 rounds × 20,000 sequential calls):')
  const base = best['stub fetch + json()'] as number
  for (const [name, us] of Object.entries(best)) console.log(`${name.padEnd(32)} ${us.toFixed(2)} µs  (+${(us - base).toFixed(2)} µs)`)
  for (const client of [plain, propagating, full]) client[Symbol.dispose]()
}

main()
  .then(overhead)
  .catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
