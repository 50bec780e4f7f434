import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Registry } from 'prom-client'

/**
 * A real HTTP server on 127.0.0.1 counting the requests each path receives, the request sockets
 * that closed, and the TCP connections it accepted.
 */
export interface Upstream {
  readonly url: string
  readonly server: Server
  hits(path: string): number
  /** TCP connections accepted so far, whether or not a request came on them. */
  connections(): number
  /** The `request-timeout-ms` header of each request to `path`, in order (NaN when absent). */
  budgets(path: string): number[]
  /** Requests whose connection closed before a response was finished. */
  aborted(path: string): number
  close(): Promise<void>
}

export type Handler = (req: IncomingMessage, res: ServerResponse, hit: number) => void

export async function upstream(routes: Record<string, Handler>): Promise<Upstream> {
  const hits = new Map<string, number>()
  const aborted = new Map<string, number>()
  const budgets = new Map<string, number[]>()
  let connections = 0
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const hit = (hits.get(path) ?? 0) + 1
    hits.set(path, hit)
    const budget = req.headers['request-timeout-ms']
    const sent = budgets.get(path) ?? []
    sent.push(budget === undefined ? Number.NaN : Number(budget))
    budgets.set(path, sent)
    res.on('close', () => {
      if (!res.writableFinished) aborted.set(path, (aborted.get(path) ?? 0) + 1)
    })
    const route = routes[path]
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}')
      return
    }
    route(req, res, hit)
  })
  server.on('connection', () => {
    connections++
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    hits: (path) => hits.get(path) ?? 0,
    connections: () => connections,
    budgets: (path) => [...(budgets.get(path) ?? [])],
    aborted: (path) => aborted.get(path) ?? 0,
    async close() {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/** A port nothing listens on: bound, then released. */
export async function closedPort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

/**
 * The value of one series. A metric or a series that does not exist is an error, not 0: every
 * series the client and its breaker export is created at 0 up front, so a missing one is a
 * misspelled name or label, which must not read as "nothing happened". Labels left out must
 * not leave a choice either: more than one matching series is an error too.
 */
export async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const found = registry.getSingleMetric(name)
  if (found === undefined) throw new Error(`no metric ${name} in the registry`)
  const { values } = await found.get()
  const matching = values.filter((v) =>
    Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want),
  )
  if (matching.length !== 1) {
    throw new Error(
      `${matching.length === 0 ? 'no' : `${matching.length} (ambiguous)`} series ${name}${JSON.stringify(labels)} in the registry`,
    )
  }
  return (matching[0] as (typeof values)[number]).value
}

/** Snapshot of series values, for deltas. */
export async function snapshot(
  registry: Registry,
  series: Record<string, [string, Record<string, string>]>,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const [key, [name, labels]] of Object.entries(series)) out[key] = await metric(registry, name, labels)
  return out
}

/** Active handles and requests, by type, ignoring the test runner's own. */
/**
 * A `fetch` that passes every call on and records why each call's signal
 * aborted (the attempt's own budget, the caller's deadline…), in order.
 */
export function abortReasonSpy(): { fetch: typeof fetch; reasons: unknown[] } {
  const reasons: unknown[] = []
  const spy: typeof fetch = (input, init) => {
    const signal = init?.signal as AbortSignal
    signal.addEventListener('abort', () => reasons.push(signal.reason), { once: true })
    return fetch(input, init)
  }
  return { fetch: spy, reasons }
}

export function activeResources(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((type) => type !== 'TTYWrap' && type !== 'PipeWrap')
    .sort()
}

/** Waits (bounded) until the active resources are back to `baseline`; returns what is left over. */
export async function backToBaseline(baseline: readonly string[], within = 2_000): Promise<string[]> {
  const started = performance.now()
  for (;;) {
    const now = activeResources()
    const extra = [...now]
    for (const type of baseline) {
      const i = extra.indexOf(type)
      if (i >= 0) extra.splice(i, 1)
    }
    if (extra.length === 0 || performance.now() - started > within) return extra
    await sleep(20)
  }
}

export function promtool(exposition: string): Promise<{ code: number | null; output: string }> {
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
