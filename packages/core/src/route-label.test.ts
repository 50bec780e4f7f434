import type { AddressInfo } from 'node:net'
import express, { type Request } from 'express'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { methodLabel, OTHER_METHOD, routeLabel, UNMATCHED_ROUTE } from './route-label.js'

const seen: { route: string; method: string }[] = []

function buildApp() {
  const app = express()
  app.use((req, res, next) => {
    res.on('finish', () => seen.push({ route: routeLabel(req as Request), method: methodLabel(req.method) }))
    next()
  })
  app.get('/', (_req, res) => {
    res.send('root')
  })
  app.get('/health', (_req, res) => {
    res.send('ok')
  })
  app.get('/orders/:id', (_req, res) => {
    res.send('order')
  })
  const items = express.Router()
  items.get('/', (_req, res) => {
    res.send('list')
  })
  items.get('/:itemId', async (_req, res) => {
    await new Promise((resolve) => setImmediate(resolve))
    res.send('item')
  })
  const api = express.Router()
  api.use('/items', items)
  api.post('/orders/:id/cancel', (_req, res) => {
    res.status(202).send('cancelled')
  })
  app.use('/api', api)
  return app
}

let base = ''
let close: () => Promise<void>

beforeAll(async () => {
  const server = buildApp().listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  close = () => new Promise((resolve) => server.close(() => resolve()))
})

afterAll(async () => {
  await close()
})

async function labelOf(method: string, path: string) {
  seen.length = 0
  const response = await fetch(base + path, { method })
  await response.arrayBuffer()
  await new Promise((resolve) => setImmediate(resolve))
  expect(seen).toHaveLength(1)
  return { status: response.status, ...seen[0] }
}

describe('routeLabel on a real Express 5 app', () => {
  it('labels plain routes, params, nested routers and 404s by template', async () => {
    expect(await labelOf('GET', '/')).toMatchObject({ status: 200, route: '/', method: 'GET' })
    expect(await labelOf('GET', '/health')).toMatchObject({ status: 200, route: '/health' })
    expect(await labelOf('GET', '/orders/42')).toMatchObject({ route: '/orders/:id' })
    expect(await labelOf('GET', '/api/items')).toMatchObject({ status: 200, route: '/api/items' })
    expect(await labelOf('GET', '/api/items/7')).toMatchObject({ status: 200, route: '/api/items/:itemId' })
    expect(await labelOf('POST', '/api/orders/9/cancel')).toMatchObject({ status: 202, route: '/api/orders/:id/cancel', method: 'POST' })
    expect(await labelOf('GET', '/nope')).toMatchObject({ status: 404, route: UNMATCHED_ROUTE })
    expect(await labelOf('GET', '/api/nope/deeper')).toMatchObject({ status: 404, route: UNMATCHED_ROUTE })
  })

  it('folds methods outside the standard set', async () => {
    expect(await labelOf('PROPFIND', '/health')).toMatchObject({ route: UNMATCHED_ROUTE, method: OTHER_METHOD })
    expect(methodLabel('get')).toBe('GET')
    expect(methodLabel(undefined)).toBe(OTHER_METHOD)
    expect(methodLabel('X-JUNK')).toBe(OTHER_METHOD)
  })

  it('keeps the label set bounded over 1,000 random paths and methods', async () => {
    const templates = new Set([
      '/',
      '/health',
      '/orders/:id',
      '/api/items',
      '/api/items/:itemId',
      '/api/orders/:id/cancel',
      UNMATCHED_ROUTE,
    ])
    const methods = ['GET', 'POST', 'DELETE', 'PATCH', 'PROPFIND', 'MKCOL']
    const segment = fc.stringMatching(/^[A-Za-z0-9._~-]{1,12}$/)
    const paths = fc.sample(
      fc.oneof(
        fc.array(segment, { minLength: 0, maxLength: 5 }).map((parts) => `/${parts.join('/')}`),
        segment.map((id) => `/orders/${id}`),
        segment.map((id) => `/api/items/${id}`),
        segment.map((id) => `/api/orders/${id}/cancel`),
      ),
      1_000,
    )
    seen.length = 0
    for (const [index, path] of paths.entries()) {
      const response = await fetch(base + path, { method: methods[index % methods.length] ?? 'GET' })
      await response.arrayBuffer()
    }
    await new Promise((resolve) => setImmediate(resolve))
    expect(seen).toHaveLength(1_000)
    const routes = new Set(seen.map((entry) => entry.route))
    for (const route of routes) expect(templates).toContain(route)
    expect(new Set(seen.map((entry) => entry.method)).size).toBeLessThanOrEqual(5)
  })
})
