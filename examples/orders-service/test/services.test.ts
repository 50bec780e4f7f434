import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadOrdersConfig } from '../src/config.js'
import { parseExposition } from '../src/demo/metrics-reader.js'
import { createInventoryService, type InventoryService } from '../src/inventory-service.js'
import { type OrderStore, openOrderStore } from '../src/order-store.js'
import { createOrdersService, type OrdersService } from '../src/orders-service.js'
import { alertExpressions, dashboardExpressions, metricNames } from './support/promql.js'

const run = promisify(execFile)

/**
 * The two services in this process, each on its own registry, against a real
 * SQLite file: the HTTP contract of the example, its metrics exposition (checked
 * by promtool) and the dashboard/alert drift check against that exposition.
 */
describe('orders and inventory services', () => {
  let dir: string
  let store: OrderStore
  let inventory: InventoryService
  let orders: OrdersService
  let ordersRegistry: Registry
  let inventoryRegistry: Registry
  let base: string
  let inventoryBase: string
  let metricsUrl: string
  let baseline: string[]
  const logger = pino({ level: 'silent' })

  beforeAll(async () => {
    baseline = process.getActiveResourcesInfo()
    dir = await mkdtemp(join(tmpdir(), 'ballast-orders-'))
    ordersRegistry = new Registry()
    inventoryRegistry = new Registry()
    inventory = createInventoryService({ logger, registry: inventoryRegistry, drain: { signals: false, exit: false } })
    const inventoryPorts = await inventory.listen('127.0.0.1', 0, 0)
    inventoryBase = `http://127.0.0.1:${inventoryPorts.port}`
    const config = loadOrdersConfig({
      PORT: '0',
      METRICS_PORT: '0',
      INVENTORY_URL: inventoryBase,
      SQLITE_PATH: join(dir, 'orders.db'),
      BREAKER_VOLUME_THRESHOLD: '5',
      BREAKER_RESET_TIMEOUT_MS: '60000',
      LOG_LEVEL: 'silent',
    })
    store = await openOrderStore(config)
    orders = createOrdersService({ config, store, logger, registry: ordersRegistry, drain: { signals: false, exit: false } })
    const ports = await orders.listen()
    base = `http://127.0.0.1:${ports.port}`
    metricsUrl = `http://127.0.0.1:${ports.metricsPort}/metrics`
  })

  afterAll(async () => {
    await orders?.drain.shutdown('test done')
    await inventory?.drain.shutdown('test done')
    await rm(dir, { recursive: true, force: true })
  })

  const post = (body: unknown) =>
    fetch(`${base}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const setFaults = async (faults: Record<string, unknown>) => {
    const response = await fetch(`${inventoryBase}/admin/faults`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(faults),
    })
    return { status: response.status, body: (await response.json()) as Record<string, unknown> }
  }

  it('creates an order, reads it back with fresh stock, and rejects bad input', async () => {
    const created = await post({ itemId: 'sku-1', quantity: 2 })
    expect(created.status).toBe(201)
    const order = (await created.json()) as { id: string; reservationId: string }
    expect(order.reservationId).toMatch(/^r-/)
    expect(await store.count()).toBe(1)

    const read = await fetch(`${base}/orders/${order.id}`)
    expect(read.status).toBe(200)
    expect(await read.json()).toMatchObject({ id: order.id, itemId: 'sku-1', quantity: 2, stock: { itemId: 'sku-1', source: 'inventory' } })

    expect((await post({ itemId: 'bad id!', quantity: 1 })).status).toBe(400)
    expect((await post({ itemId: 'sku-1', quantity: 1000 })).status).toBe(400)
    expect((await fetch(`${base}/orders/00000000-0000-0000-0000-000000000000`)).status).toBe(404)
    expect((await fetch(`${base}/orders/not-an-id`)).status).toBe(404)
    expect(await store.count()).toBe(1)
    expect((await fetch(`${base}/readyz`)).status).toBe(200)
    expect((await fetch(`${base}/livez`)).status).toBe(200)
  })

  it('validates fault updates at the admin endpoint', async () => {
    expect((await setFaults({ errorRate: 2 })).status).toBe(400)
    expect((await setFaults({ latency: 5 })).status).toBe(400)
    expect((await setFaults({ hang: 'yes' })).status).toBe(400)
    expect(await setFaults({ latencyMs: 1 })).toEqual({ status: 200, body: { latencyMs: 1, jitterMs: 0, errorRate: 0, hang: false } })
    expect((await setFaults({ latencyMs: 0 })).status).toBe(200)
  })

  it('answers 504 within the route deadline when the inventory hangs and nothing is cached', async () => {
    const created = (await (await post({ itemId: 'sku-hang', quantity: 1 })).json()) as { id: string }
    await setFaults({ hang: true })
    try {
      const started = performance.now()
      // A caller budget of 150 ms, propagated through the orders service to the inventory.
      const response = await fetch(`${base}/orders/${created.id}`, { headers: { 'request-timeout-ms': '150' } })
      const elapsed = performance.now() - started
      expect([503, 504]).toContain(response.status)
      expect(elapsed).toBeLessThan(2_000)
    } finally {
      await setFaults({ hang: false })
    }
  })

  it('opens the breaker on a failing inventory: cached stock for reads, 503 + Retry-After for writes', async () => {
    const created = (await (await post({ itemId: 'sku-2', quantity: 1 })).json()) as { id: string }
    expect((await (await fetch(`${base}/orders/${created.id}`)).json()) as object).toMatchObject({ stock: { source: 'inventory' } })
    await setFaults({ errorRate: 1 })
    try {
      for (let i = 0; i < 10; i++) {
        const response = await fetch(`${base}/orders/${created.id}`)
        expect(response.status).toBe(200)
        expect(await response.json()).toMatchObject({ stock: { itemId: 'sku-2', source: 'cache' } })
      }
      expect(orders.inventory.breaker?.state).toBe('open')
      const rows = await store.count()
      const refused = await post({ itemId: 'sku-2', quantity: 1 })
      expect(refused.status).toBe(503)
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/)
      expect(await store.count()).toBe(rows)
    } finally {
      await setFaults({ errorRate: 0 })
    }
  })

  it('exposes metrics that pass promtool check metrics', async () => {
    const scraped = await fetch(metricsUrl)
    expect(scraped.headers.get('content-type')).toContain('text/plain')
    for (const [name, text] of [
      ['orders', await scraped.text()],
      ['inventory', await inventoryRegistry.metrics()],
    ] as const) {
      expect(text).toContain('ballast_')
      const file = join(dir, `${name}-exposition.txt`)
      await writeFile(file, text)
      const result = await run('sh', ['-c', `promtool check metrics < "${file}"`]).catch(
        (error: { stdout: string; stderr: string }) => error,
      )
      expect(`${result.stdout}${result.stderr}`.trim(), name).toBe('')
    }
  })

  it('the dashboard and the alert rules reference only metrics the services expose (drift check)', async () => {
    const exposed = new Set(
      [...parseExposition(await ordersRegistry.metrics()), ...parseExposition(await inventoryRegistry.metrics())].map(
        (sample) => sample.name,
      ),
    )
    const referenced = [
      ...dashboardExpressions().map(({ panel, expr }) => ({ where: `dashboard panel "${panel}"`, expr })),
      ...alertExpressions().map(({ alert, expr }) => ({ where: `alert ${alert}`, expr })),
    ]
    expect(referenced.length).toBeGreaterThan(25)
    const missing = referenced.flatMap(({ where, expr }) =>
      metricNames(expr)
        .filter((name) => !exposed.has(name))
        .map((name) => `${where}: ${name}`),
    )
    expect(missing).toEqual([])
  })

  it('drains on shutdown: store closed by its hook, logger flushed, no handle left behind', async () => {
    const report = await orders.drain.shutdown('test')
    expect(report.outcome).toBe('ok')
    expect(report.hooks.map((hook) => [hook.name, hook.outcome])).toEqual([
      ['store', 'ok'],
      ['logger', 'ok'],
    ])
    await expect(store.count()).rejects.toThrow()
    expect((await inventory.drain.shutdown('test')).outcome).toBe('ok')
    // Keep-alive sockets of the test's own fetch close once the servers are gone.
    const deadline = Date.now() + 5_000
    const leftover = () => {
      const now = process.getActiveResourcesInfo().filter((name) => name !== 'TTYWrap')
      const before = [...baseline]
      return now.filter((name) => {
        const index = before.indexOf(name)
        if (index === -1) return true
        before.splice(index, 1)
        return false
      })
    }
    while (leftover().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(leftover()).toEqual([])
  })
})
