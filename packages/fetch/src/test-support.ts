import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Registry } from 'prom-client'

/** A real HTTP server on 127.0.0.1 counting the requests each path receives and the request sockets that closed. */
export interface Upstream {
  readonly url: string
  readonly server: Server
  hits(path: string): number
  /** Requests whose connection closed before a response was finished. */
  aborted(path: string): number
  close(): Promise<void>
}

export type Handler = (req: IncomingMessage, res: ServerResponse, hit: number) => void

export async function upstream(routes: Record<string, Handler>): Promise<Upstream> {
  const hits = new Map<string, number>()
  const aborted = new Map<string, number>()
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const hit = (hits.get(path) ?? 0) + 1
    hits.set(path, hit)
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
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    hits: (path) => hits.get(path) ?? 0,
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

/** The value of one series (0 when absent). */
export async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const found = registry.getSingleMetric(name)
  if (found === undefined) return 0
  const { values } = await found.get()
  const entry = values.find((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want))
  return entry?.value ?? 0
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
