import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { metricsHandler } from '@ballast/core'
import { Deadline, deadline } from '@ballast/deadline'
import { Drain, type DrainOptions } from '@ballast/drain'
import express, { type ErrorRequestHandler, type Express, type Request, type Response } from 'express'
import type { Logger } from 'pino'
import { register as globalRegistry, type Registry } from 'prom-client'
import { drawLatency, type Faults, HEALTHY, parseFaults } from './faults.js'

/** Options of {@link createInventoryService}. */
export interface InventoryServiceOptions {
  readonly logger: Logger
  /** Default: prom-client's global registry. */
  readonly registry?: Registry
  /** Passed to the drain: tests use `{ signals: false }`. */
  readonly drain?: Pick<DrainOptions, 'signals' | 'exit' | 'readinessDelay' | 'gracePeriod'>
  /** Faults at start. Default: none. */
  readonly faults?: Faults
}

/** The inventory service: stock lookups and reservations with injectable faults. */
export interface InventoryService {
  readonly app: Express
  readonly drain: Drain
  /** The faults in force (also `GET /admin/faults`). */
  faults: Faults
  /** Listens on `host:port` and `host:metricsPort` (0 picks free ports). */
  listen(host: string, port: number, metricsPort: number): Promise<{ port: number; metricsPort: number }>
}

const ITEM_ID = /^[A-Za-z0-9_-]{1,64}$/

/** A stable stock level per item, so a cached answer can be compared with a fresh one. */
function stockOf(itemId: string): number {
  let hash = 0
  for (const char of itemId) hash = (Math.imul(hash, 31) + char.charCodeAt(0)) | 0
  return (hash >>> 0) % 500
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

/**
 * Builds the inventory service the orders service depends on. Its faults
 * (latency, error rate, hang) are switched by `PUT /admin/faults`, which is how
 * the demo moves from one phase to the next. It honours the deadline the orders
 * service propagates (`request-timeout-ms`): work whose caller gave up stops.
 *
 * @example
 * ```ts
 * const inventory = createInventoryService({ logger: pino() })
 * await inventory.listen('127.0.0.1', 8081, 9465)
 * // curl -X PUT -H 'content-type: application/json' -d '{"latencyMs":700}' 127.0.0.1:8081/admin/faults
 * ```
 */
export function createInventoryService(options: InventoryServiceOptions): InventoryService {
  const registry = options.registry ?? globalRegistry
  const logger = options.logger
  const drain = new Drain({ logger: logger.child({ component: 'drain' }), registry, ...options.drain })
  const app = express()
  app.disable('x-powered-by')
  const service: InventoryService = {
    app,
    drain,
    faults: options.faults ?? HEALTHY,
    async listen(host, port, metricsPort) {
      const api = createServer(app)
      const metrics = createServer((req, res) => {
        if (req.url === '/metrics' || req.url?.startsWith('/metrics?')) return void metricsHandler(registry)(req, res)
        res.statusCode = 404
        res.end()
      })
      const ports = { port: await listen(api, host, port), metricsPort: await listen(metrics, host, metricsPort) }
      drain.attach(api).attach(metrics)
      return ports
    },
  }

  app.use(drain.middleware())
  app.get('/readyz', drain.readiness())
  app.get('/livez', drain.liveness())
  app.get('/admin/faults', (_req, res) => {
    res.json(service.faults)
  })
  app.put('/admin/faults', express.json({ limit: '4kb' }), (req, res) => {
    try {
      service.faults = parseFaults(req.body, service.faults)
    } catch (error) {
      res.status(400).json({ error: 'INVALID_FAULTS', message: (error as Error).message })
      return
    }
    logger.info({ faults: service.faults }, 'faults changed')
    res.json(service.faults)
  })

  // Everything below answers within the caller's propagated budget, or 5 s.
  app.use(deadline({ timeout: 5_000, registry }))

  /** Applies the faults; false when the answer was replaced (500) or the caller is gone. */
  async function injectFaults(res: Response): Promise<boolean> {
    const faults = service.faults
    const signal = Deadline.current()?.signal
    try {
      if (faults.hang) {
        // Held until the propagated deadline expires or the caller hangs up.
        await new Promise<never>((_resolve, reject) => {
          if (signal === undefined) return
          signal.addEventListener('abort', () => reject(signal.reason), { once: true })
        })
      }
      const latency = drawLatency(faults)
      if (latency > 0) await sleep(latency, undefined, signal === undefined ? {} : { signal })
    } catch {
      // The caller's budget is spent: the deadline middleware has answered, stop working.
      return false
    }
    if (faults.errorRate > 0 && Math.random() < faults.errorRate) {
      res.status(500).json({ error: 'INVENTORY_FAULT', message: 'injected failure' })
      return false
    }
    return true
  }

  app.get('/stock/:itemId', async (req: Request<{ itemId: string }>, res) => {
    const { itemId } = req.params
    if (!ITEM_ID.test(itemId)) {
      res.status(400).json({ error: 'INVALID_ITEM', message: 'item id must match [A-Za-z0-9_-]{1,64}' })
      return
    }
    if (!(await injectFaults(res))) return
    res.json({ itemId, available: stockOf(itemId), asOf: Date.now() })
  })

  let reservations = 0
  app.post('/reservations', express.json({ limit: '4kb' }), async (req, res) => {
    const body = req.body as { itemId?: unknown; quantity?: unknown } | undefined
    if (typeof body?.itemId !== 'string' || !ITEM_ID.test(body.itemId) || !Number.isInteger(body.quantity)) {
      res.status(400).json({ error: 'INVALID_RESERVATION', message: 'expected { itemId, quantity }' })
      return
    }
    if (!(await injectFaults(res))) return
    reservations++
    res.status(201).json({ id: `r-${process.pid}-${reservations}`, itemId: body.itemId, quantity: body.quantity })
  })

  const onError: ErrorRequestHandler = (error, _req, res, _next) => {
    if (res.headersSent) {
      if (!res.writableEnded) res.end()
      return
    }
    const status = typeof error?.status === 'number' && error.status >= 400 && error.status < 600 ? error.status : 500
    res.status(status).json({ error: error?.code ?? 'INTERNAL', message: error?.message ?? 'internal error' })
  }
  app.use(onError)
  return service
}
