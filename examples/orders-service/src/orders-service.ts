import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { BallastError, metricsHandler } from '@ballast/core'
import { Deadline, deadline } from '@ballast/deadline'
import { Drain, type DrainOptions } from '@ballast/drain'
import { type Client, createClient } from '@ballast/fetch'
import express, { type ErrorRequestHandler, type Express, type Request } from 'express'
import type { Logger } from 'pino'
import { register as globalRegistry, type Registry } from 'prom-client'
import type { OrdersConfig } from './config.js'
import { flushLogger } from './logger.js'
import type { Order, OrderStore } from './order-store.js'
import { StockCache, type StockView } from './stock-cache.js'

/** Options of {@link createOrdersService}. */
export interface OrdersServiceOptions {
  readonly config: OrdersConfig
  readonly store: OrderStore
  readonly logger: Logger
  /** Default: prom-client's global registry. */
  readonly registry?: Registry
  /** Passed to the drain: tests use `{ signals: false, exit: false }`. */
  readonly drain?: Pick<DrainOptions, 'signals' | 'exit'>
}

/** The orders service, built but not yet listening. */
export interface OrdersService {
  readonly app: Express
  readonly drain: Drain
  readonly inventory: Client
  /** Listens on the configured host and ports (0 picks free ones); the metrics server is attached to the drain last. */
  listen(): Promise<{ port: number; metricsPort: number }>
}

const ITEM_ID = /^[A-Za-z0-9_-]{1,64}$/
const ORDER_ID = /^[0-9a-f-]{36}$/

/** Stock of an item could be served neither by the inventory nor from the cache. */
class StockUnavailableError extends BallastError {
  constructor(itemId: string, cause: unknown) {
    super(`stock of item ${itemId} is unavailable and not cached`, { code: 'ORDERS_STOCK_UNAVAILABLE', status: 503, cause })
  }
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
 * Builds the orders service of design section 5: every request under an
 * app-wide deadline, `GET /orders/:id` under a tighter one with the inventory
 * lookup behind a breaker and a cached fallback, `POST /orders` reserving stock
 * (never retried: a reservation is not idempotent) and writing the order, and
 * a drain that closes the API, then the metrics port, then runs the hooks:
 * the store is closed first, the logger flushed last.
 *
 * @example
 * ```ts
 * const config = loadOrdersConfig(process.env)
 * const logger = createLogger(config.logLevel)
 * const service = createOrdersService({ config, logger, store: await openOrderStore(config) })
 * await service.listen()
 * ```
 */
export function createOrdersService(options: OrdersServiceOptions): OrdersService {
  const { config, store, logger } = options
  const registry = options.registry ?? globalRegistry
  const drain = new Drain({
    gracePeriod: config.drainGracePeriod,
    ...(config.drainReadinessDelay === undefined ? {} : { readinessDelay: config.drainReadinessDelay }),
    logger: logger.child({ component: 'drain' }),
    registry,
    ...options.drain,
  })
  // Registered first so it runs last (hooks are LIFO): the store's close is logged too.
  drain.onShutdown('logger', () => flushLogger(logger), { timeout: 1_000 })
  drain.onShutdown(
    'store',
    async () => {
      await store.close()
      logger.info({ store: store.kind }, 'store closed')
    },
    { timeout: 5_000 },
  )

  const inventory = createClient({
    name: 'inventory',
    baseUrl: config.inventoryUrl,
    timeout: config.inventoryTimeout,
    breaker: {
      volumeThreshold: config.breakerVolumeThreshold,
      errorThresholdPercentage: config.breakerErrorThresholdPercentage,
      resetTimeout: config.breakerResetTimeout,
    },
    retry: { attempts: 1, delay: 25 },
    registry,
  })
  inventory.breaker?.onStateChange((event) => logger.warn({ breaker: 'inventory', ...event }, 'breaker state changed'))
  const cache = new StockCache(10_000)

  const app = express()
  app.disable('x-powered-by')
  app.disable('etag')
  app.use(drain.middleware())
  app.get('/readyz', drain.readiness())
  app.get('/livez', drain.liveness())
  app.use(deadline({ timeout: config.requestTimeout, registry }))

  app.get('/orders/:id', deadline({ timeout: config.orderTimeout, registry }), async (req: Request<{ id: string }>, res) => {
    const { id } = req.params
    if (!ORDER_ID.test(id)) {
      res.status(404).json({ error: 'ORDER_NOT_FOUND', message: 'no such order' })
      return
    }
    const order = await store.get(id)
    if (order === undefined) {
      res.status(404).json({ error: 'ORDER_NOT_FOUND', message: 'no such order' })
      return
    }
    const fresh = await inventory.json<Omit<StockView, 'source'>>(`/stock/${encodeURIComponent(order.itemId)}`, {
      fallback: () => {
        const cached = cache.get(order.itemId)
        if (cached === undefined) throw new StockUnavailableError(order.itemId, undefined)
        return Response.json({ ...cached, source: 'cache' } satisfies StockView)
      },
    })
    const stock: StockView = 'source' in fresh && fresh.source === 'cache' ? (fresh as StockView) : { ...fresh, source: 'inventory' }
    if (stock.source === 'inventory') cache.set(order.itemId, stock)
    res.json({ ...order, stock })
  })

  app.post('/orders', express.json({ limit: '4kb' }), async (req, res) => {
    const body = req.body as { itemId?: unknown; quantity?: unknown } | undefined
    const quantity = body?.quantity
    if (
      typeof body?.itemId !== 'string' ||
      !ITEM_ID.test(body.itemId) ||
      !Number.isInteger(quantity) ||
      (quantity as number) < 1 ||
      (quantity as number) > 100
    ) {
      res.status(400).json({ error: 'INVALID_ORDER', message: 'expected { itemId: [A-Za-z0-9_-]{1,64}, quantity: 1..100 }' })
      return
    }
    const itemId = body.itemId
    // A POST is not idempotent: the client never retries it, and a failure here answers at once.
    // A write may take longer than a lookup: its own attempt budget, still capped by the request's deadline.
    const reservation = await inventory.json<{ id: string }>('/reservations', {
      method: 'POST',
      timeout: config.reservationTimeout,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ itemId, quantity }),
    })
    // Do not write for a caller whose deadline already answered 504: it would count the order as failed.
    Deadline.current()?.signal.throwIfAborted()
    const order: Order = { id: randomUUID(), itemId, quantity: quantity as number, reservationId: reservation.id, createdAt: Date.now() }
    await store.insert(order)
    res.status(201).json(order)
  })

  const onError: ErrorRequestHandler = (error, req, res, _next) => {
    if (res.headersSent) {
      // The deadline answered already; this is the handler noticing late.
      if (!res.writableEnded) res.end()
      return
    }
    const status = typeof error?.status === 'number' && error.status >= 400 && error.status < 600 ? error.status : 500
    if (status >= 500) logger.warn({ err: error, method: req.method, url: req.originalUrl, status }, 'request failed')
    const headers = (error as { headers?: Record<string, string> }).headers
    if (headers !== undefined) res.set(headers)
    // Client errors and the resilience answers (503, 504) explain themselves; other 5xx do not leak internals.
    const message =
      status < 500 || status === 503 || status === 504 ? String(error?.message) : status === 502 ? 'a dependency failed' : 'internal error'
    res.status(status).json({ error: error?.code ?? 'INTERNAL', message })
  }
  app.use(onError)

  return {
    app,
    drain,
    inventory,
    async listen() {
      const api = createServer(app)
      const metrics = createServer((req, res) => {
        if (req.url === '/metrics' || req.url?.startsWith('/metrics?')) return void metricsHandler(registry)(req, res)
        res.statusCode = 404
        res.end()
      })
      const ports = {
        port: await listen(api, config.host, config.port),
        metricsPort: await listen(metrics, config.host, config.metricsPort),
      }
      // Metrics last: the drain closes it only after the API drained, so the shutdown itself is scraped.
      drain.attach(api).attach(metrics)
      logger.info({ ...ports, host: config.host, store: store.kind, inventory: config.inventoryUrl }, 'orders service listening')
      return ports
    },
  }
}
