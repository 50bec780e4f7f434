import { spawnSync } from 'node:child_process'
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import express4 from 'express4'
import { Counter, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { MAX_MOUNTS_PER_ROUTE, MAX_ROUTE_LABELS, OTHER_MOUNT, OTHER_ROUTES } from './deadline-metrics.js'
import { deadline, requestDeadline } from './deadline-middleware.js'
import { ClientClosedError } from './errors.js'
import * as api from './index.js'
import { expressVersions, listen, rawExchange, sleep } from './test-helpers.js'

const value = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1))
}

describe.each(expressVersions)('deadline() metrics on %s', (_name, express) => {
  it('creates label sets at 0, moves counters by exactly the 504s, and passes promtool', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 30, registry, routes: ['GET /slow', 'GET /ok'] }))
    app.get('/slow', (_req, res) => {
      setTimeout(() => res.json({ late: true }), 60)
    })
    app.get('/ok', (_req, res) => {
      res.json({ ok: true })
    })
    const before = await registry.metrics()
    for (const series of [
      'ballast_deadline_requests_total{route="/slow",method="GET"}',
      'ballast_deadline_exceeded_total{route="/slow",method="GET",reason="deadline"}',
      'ballast_deadline_exceeded_total{route="/slow",method="GET",reason="inherited"}',
      'ballast_deadline_late_writes_total{route="/slow"}',
      'ballast_deadline_client_closed_total{route="/ok",method="GET"}',
      'ballast_deadline_header_rejected_total{reason="invalid"}',
      'ballast_deadline_header_rejected_total{reason="expired"}',
      'ballast_deadline_budget_seconds_count{route="/ok",source="header"}',
      'ballast_deadline_overrun_seconds_count{route="/slow"}',
    ]) {
      expect(value(before, series), series).toBe(0)
    }
    const server = await listen(app as never)
    try {
      for (let i = 0; i < 7; i++) expect((await fetch(`${server.origin}/slow`)).status).toBe(504)
      for (let i = 0; i < 3; i++) expect((await fetch(`${server.origin}/ok`, { headers: { 'request-timeout-ms': '20' } })).status).toBe(200)
      await new Promise((resolve) => setTimeout(resolve, 80))
      const after = await registry.metrics()
      expect(value(after, 'ballast_deadline_exceeded_total{route="/slow",method="GET",reason="deadline"}')).toBe(7)
      expect(value(after, 'ballast_deadline_exceeded_total{route="/slow",method="GET",reason="inherited"}')).toBe(0)
      expect(value(after, 'ballast_deadline_requests_total{route="/slow",method="GET"}')).toBe(7)
      expect(value(after, 'ballast_deadline_requests_total{route="/ok",method="GET"}')).toBe(3)
      expect(value(after, 'ballast_deadline_late_writes_total{route="/slow"}')).toBe(7)
      expect(value(after, 'ballast_deadline_overrun_seconds_count{route="/slow"}')).toBe(7)
      expect(value(after, 'ballast_deadline_budget_seconds_count{route="/ok",source="header"}')).toBe(3)
      expect(value(after, 'ballast_deadline_budget_seconds_count{route="/slow",source="default"}')).toBe(7)
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: after, encoding: 'utf8' })
      expect(promtool.error).toBeUndefined()
      expect(`${promtool.stdout}${promtool.stderr}`.trim()).toBe('')
      expect(promtool.status).toBe(0)
    } finally {
      await server.close()
    }
  })

  it('records the budget a request runs under: a shorter route deadline() replaces the app-wide one and the caller budget', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 2_000, registry }))
    app.get('/short', deadline({ timeout: 500, registry }), (_req, res) => {
      res.json({ ok: true })
    })
    const server = await listen(app as never)
    try {
      const get = async (budget?: string) =>
        expect((await fetch(`${server.origin}/short`, budget ? { headers: { 'request-timeout-ms': budget } } : {})).status).toBe(200)
      await get()
      await get('1000')
      // A caller budget shorter than the route's stays the request's budget.
      await get('300')
      const after = await registry.metrics()
      expect(value(after, 'ballast_deadline_budget_seconds_count{route="/short",source="default"}')).toBe(2)
      expect(value(after, 'ballast_deadline_budget_seconds_sum{route="/short",source="default"}')).toBe(1)
      expect(value(after, 'ballast_deadline_budget_seconds_count{route="/short",source="header"}')).toBe(1)
      expect(value(after, 'ballast_deadline_budget_seconds_sum{route="/short",source="header"}')).toBe(0.3)
    } finally {
      await server.close()
    }
  })

  it('counts each (route, method) apart when requests alternate between routes, methods and mounts', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 1_000, registry }))
    // One route object answers two methods, and one router is mounted twice: the
    // series must follow the method and the mount path, not only the route object.
    const items = express.Router()
    items
      .route('/items/:id')
      .get((_req, res) => {
        res.json({ get: true })
      })
      .post((_req, res) => {
        res.json({ post: true })
      })
    app.use('/a', items)
    app.use('/b', items)
    const kinds = [
      { method: 'GET', path: '/a/items/1', route: '/a/items/:id' },
      { method: 'POST', path: '/a/items/2', route: '/a/items/:id' },
      { method: 'GET', path: '/b/items/3', route: '/b/items/:id' },
      { method: 'POST', path: '/b/items/4', route: '/b/items/:id' },
      { method: 'GET', path: '/nowhere', route: '<unmatched>' },
    ]
    const sent = new Map<string, number>()
    const order: (typeof kinds)[number][] = []
    let seed = 7
    for (let i = 0; i < 60; i++) {
      seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0
      const kind = kinds[seed % kinds.length] as (typeof kinds)[number]
      order.push(kind)
      const key = `ballast_deadline_requests_total{route="${kind.route}",method="${kind.method}"}`
      sent.set(key, (sent.get(key) ?? 0) + 1)
    }
    const server = await listen(app as never)
    try {
      for (const kind of order) await (await fetch(`${server.origin}${kind.path}`, { method: kind.method })).arrayBuffer()
      await new Promise((resolve) => setTimeout(resolve, 20))
      const after = await registry.metrics()
      expect(sent.size).toBe(kinds.length)
      for (const [series, count] of sent) expect(value(after, series), series).toBe(count)
      // The budget histogram is per route: a route's second method adds to it, never resets it.
      for (const route of new Set(kinds.map((kind) => kind.route))) {
        const requests = order.filter((kind) => kind.route === route).length
        expect(value(after, `ballast_deadline_budget_seconds_count{route="${route}",source="default"}`), route).toBe(requests)
      }
    } finally {
      await server.close()
    }
  })
})

/**
 * A handler that destroys its response 10 ms in, then is busy past a 40 ms deadline
 * before Node reports the response closed: reading the clock aborts the deadline then.
 */
function dropThenOverrun(req: IncomingMessage, res: ServerResponse): void {
  setTimeout(() => {
    res.destroy()
    const end = performance.now() + 60
    while (performance.now() < end) {}
    void requestDeadline(req)?.expired
  }, 10)
}

describe('a request whose connection went away just before its deadline', () => {
  it('is counted as a client that closed, not lost between the two counters', async () => {
    const registry = new Registry()
    const app = express4()
    app.use(deadline({ timeout: 40, registry }))
    app.get('/gone', dropThenOverrun)
    const server = await listen(app as never)
    try {
      await fetch(`${server.origin}/gone`).catch(() => undefined)
      await sleep(50)
      const text = await registry.metrics()
      expect(value(text, 'ballast_deadline_client_closed_total{route="/gone",method="GET"}')).toBe(1)
      expect(value(text, 'ballast_deadline_exceeded_total{route="/gone",method="GET",reason="deadline"}')).toBe(0)
      expect(value(text, 'ballast_deadline_requests_total{route="/gone",method="GET"}')).toBe(1)
    } finally {
      await server.close()
    }
  })
})

describe.each(expressVersions)('on %s: the handler reacting to its own deadline', (_name, express) => {
  it('a pipeline given the deadline signal and a signal listener answering 503: counted exceeded, not a client that closed; the 503 stands', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 60, registry }))
    app.get('/export', async (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' })
      // 100 bytes, then a source that stalls: the deadline ends the pipeline, and the response with it.
      const source = new Readable({ read() {} })
      source.push('x'.repeat(100))
      await pipeline(source, res, { signal: requestDeadline(req)?.signal }).catch(() => undefined)
    })
    app.get('/answers', (req, res) => {
      requestDeadline(req)?.signal.addEventListener('abort', () => res.status(503).json({ mine: true }))
    })
    const server = await listen(app as never)
    try {
      const cut = await fetch(`${server.origin}/export`)
      expect(cut.status).toBe(200)
      expect(await cut.text().catch((error: unknown) => error)).toBeInstanceOf(TypeError)
      // Its own answer to its deadline stands: no 504 after it, nothing late.
      const answered = await fetch(`${server.origin}/answers`)
      expect(answered.status).toBe(503)
      expect(await answered.json()).toEqual({ mine: true })
      await sleep(30)
      const text = await registry.metrics()
      for (const route of ['/export', '/answers']) {
        expect(value(text, `ballast_deadline_exceeded_total{route="${route}",method="GET",reason="deadline"}`), route).toBe(1)
        expect(value(text, `ballast_deadline_client_closed_total{route="${route}",method="GET"}`), route).toBe(0)
      }
      expect(value(text, 'ballast_deadline_late_writes_total{route="/answers"}')).toBe(0)
    } finally {
      await server.close()
    }
  })
})

describe.each(expressVersions)('on %s: a handler that answers after its deadline, before its timer could run', (_name, express) => {
  it('keeps its answer, counted answered late (not exceeded: no 504 went out); its deadline reports the expiry', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 40, registry }))
    const reasons: unknown[] = []
    app.get('/busy', (req, res) => {
      // Synchronous work past the deadline: its timer cannot run before the answer goes out.
      const until = performance.now() + 80
      while (performance.now() < until) {}
      const own = requestDeadline(req)
      res.once('close', () => reasons.push(own?.reason))
      res.json({ done: true })
    })
    app.get('/quick', (_req, res) => res.json({ done: true }))
    // Answered in time, then busy past the deadline before the response closes: in time.
    app.get('/then-busy', (_req, res) => {
      res.json({ done: true })
      const until = performance.now() + 80
      while (performance.now() < until) {}
    })
    const server = await listen(app as never)
    try {
      const late = await fetch(`${server.origin}/busy`)
      expect(late.status).toBe(200)
      expect(await late.json()).toEqual({ done: true })
      const inherited = await fetch(`${server.origin}/busy`, { headers: { 'request-timeout-ms': '20' } })
      expect(inherited.status).toBe(200)
      await inherited.arrayBuffer()
      expect((await fetch(`${server.origin}/quick`)).status).toBe(200)
      expect((await fetch(`${server.origin}/then-busy`)).status).toBe(200)
      await sleep(30)
      const text = await registry.metrics()
      expect(value(text, 'ballast_deadline_answered_late_total{route="/busy",method="GET"}')).toBe(2)
      expect(value(text, 'ballast_deadline_answered_late_total{route="/quick",method="GET"}')).toBe(0)
      expect(value(text, 'ballast_deadline_answered_late_total{route="/then-busy",method="GET"}')).toBe(0)
      for (const reason of ['deadline', 'inherited']) {
        expect(value(text, `ballast_deadline_exceeded_total{route="/busy",method="GET",reason="${reason}"}`)).toBe(0)
      }
      expect(value(text, 'ballast_deadline_late_writes_total{route="/busy"}')).toBe(0)
      expect(value(text, 'ballast_deadline_client_closed_total{route="/busy",method="GET"}')).toBe(0)
      expect(reasons.map((reason) => (reason as { source?: string } | undefined)?.source)).toEqual(['local', 'inherited'])
    } finally {
      await server.close()
    }
  })
})

describe('a nested deadline that runs out just after the connection went', () => {
  it('aborts the outer deadline with ClientClosedError, for what listens on it', async () => {
    const registry = new Registry()
    const app = express4()
    const outer: unknown[] = []
    app.use(deadline({ timeout: 1_000, registry }))
    app.use((req, _res, next) => {
      const signal = requestDeadline(req)?.signal
      signal?.addEventListener('abort', () => outer.push(signal.reason))
      next()
    })
    app.get('/nested-gone', deadline({ timeout: 40, registry }), dropThenOverrun)
    const server = await listen(app as never)
    try {
      await fetch(`${server.origin}/nested-gone`).catch(() => undefined)
      await sleep(50)
      expect(outer).toHaveLength(1)
      expect(outer[0]).toBeInstanceOf(ClientClosedError)
    } finally {
      await server.close()
    }
  })
})

describe('a request whose connection is gone when its caller budget is spent', () => {
  it('runs nothing more: a spent budget is answered before user code, even with nobody left to answer', async () => {
    const registry = new Registry()
    const app = express4()
    let handlerRan = false
    // An async step ahead of deadline() (auth, a body parser) that finishes after the client left.
    app.use((_req, res, next) => {
      res.once('close', () => next())
    })
    app.use(deadline({ timeout: 1_000, registry }))
    app.get('/spent', () => {
      handlerRan = true
    })
    const server = await listen(app as never)
    try {
      const { connect } = await import('node:net')
      const socket = connect(server.port, '127.0.0.1')
      socket.on('error', () => undefined)
      socket.write('GET /spent HTTP/1.1\r\nHost: x\r\nrequest-timeout-ms: 0\r\n\r\n')
      await sleep(50)
      socket.destroy()
      await sleep(100)
      expect(handlerRan).toBe(false)
    } finally {
      await server.close()
    }
  })
})

describe('a request queued behind a cut response, its connection closed by the cut', () => {
  it('is counted as a client that closed, not answered 504 on a connection that is gone', async () => {
    const registry = new Registry()
    const app = express4()
    const responses = new Map<string, ServerResponse>()
    const closed = new Set<string>()
    app.use((req, res, next) => {
      responses.set(req.url, res)
      res.on('close', () => {
        closed.add(req.url)
        if (req.url !== '/b') return
        // Busy past /b's deadline when its close is reported: an access log reading the clock aborts it now.
        const end = performance.now() + 30
        while (performance.now() < end) {}
        void requestDeadline(req)?.expired
      })
      next()
    })
    app.use(deadline({ timeout: 1_000, registry }))
    app.get('/a', deadline({ timeout: 40, registry }), (_req, res) => {
      res.writeHead(200, { 'content-length': '100' })
      res.write('partial ')
    })
    app.get('/b', deadline({ timeout: 45, registry }), () => undefined)
    const server = await listen(app as never)
    try {
      const { text, closedByServer } = await rawExchange(
        server.port,
        'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n',
        1_000,
      )
      expect([text.endsWith('partial '), closedByServer]).toEqual([true, true])
      // Node 24 closes a response left queued on a closed connection; on Node 22 a drain does it, like this.
      await sleep(50)
      if (!closed.has('/b')) responses.get('/b')?.emit('close')
      await sleep(20)
      const metrics = await registry.metrics()
      expect(value(metrics, 'ballast_deadline_client_closed_total{route="/b",method="GET"}')).toBe(1)
      expect(value(metrics, 'ballast_deadline_exceeded_total{route="/b",method="GET",reason="deadline"}')).toBe(0)
    } finally {
      await server.close()
    }
  })
})

describe('deadline() options', () => {
  it('takes an option given as undefined as absent (a config value passed through), in its types too', () => {
    const config: { header?: string | false } = {}
    const middleware = deadline({
      timeout: 100,
      header: config.header,
      status: undefined,
      onTimeout: undefined,
      routes: undefined,
      registry: new Registry(),
      prefix: undefined,
    })
    expect(middleware).toBeTypeOf('function')
  })

  it('rejects bad options at construction, naming the option and the value', () => {
    expect(() => deadline(undefined as never)).toThrow(TypeError)
    expect(() => deadline({} as never)).toThrow(/option "timeout"/)
    expect(() => deadline({ timeout: 0 })).toThrow(/deadline\(\): option "timeout" must be a number >= 1, got 0/)
    expect(() => deadline({ timeout: Number.NaN })).toThrow(TypeError)
    expect(() => deadline({ timeout: 10, status: 500 as never, registry: new Registry() })).toThrow(
      /option "status" must be one of 503, 504, got 500/,
    )
    expect(() => deadline({ timeout: 10, status: '504' as never, registry: new Registry() })).toThrow(
      new TypeError(`deadline(): option "status" must be one of 503, 504, got '504'`),
    )
    expect(() => deadline({ timeout: 10, header: 'bad header', registry: new Registry() })).toThrow(/option "header"/)
    expect(() => deadline({ timeout: 10, onTimeout: 'x' as never, registry: new Registry() })).toThrow(
      /option "onTimeout" must be a function/,
    )
    expect(() => deadline({ timeout: 10, registry: {} as never })).toThrow(/option "registry"/)
    expect(() => deadline({ timeout: 10, routes: ['/x'], registry: new Registry() })).toThrow(/option "routes"/)
    // A misspelt option would leave its default in force: the caller's budget header still honoured.
    expect(() => deadline({ timeout: 10, headers: false } as never)).toThrow(
      new TypeError('deadline(): unknown option "headers" (did you mean "header"?), got false'),
    )
  })

  it('uses status 503 and onTimeout when given, and falls back when onTimeout throws', async () => {
    const app = express4()
    app.get(
      '/custom',
      deadline({ timeout: 10, registry: new Registry(), onTimeout: (_req, res) => res.writeHead(503, { 'x-why': 'slow' }).end('busy') }),
      () => {},
    )
    app.get('/503', deadline({ timeout: 10, status: 503, registry: new Registry() }), () => {})
    app.get(
      '/throws',
      deadline({
        timeout: 10,
        registry: new Registry(),
        onTimeout: () => {
          throw new Error('bad hook')
        },
      }),
      () => {},
    )
    const server = await listen(app as never)
    try {
      const custom = await fetch(`${server.origin}/custom`)
      expect([custom.status, custom.headers.get('x-why'), await custom.text()]).toEqual([503, 'slow', 'busy'])
      expect((await fetch(`${server.origin}/503`)).status).toBe(503)
      expect((await fetch(`${server.origin}/throws`)).status).toBe(504)
    } finally {
      await server.close()
    }
  })

  it('labels a router mount path as one route whatever its case in the URL, and bounds the labels a parameter in a mount path makes', async () => {
    const registry = new Registry()
    const app = express4()
    app.use(deadline({ timeout: 1_000, registry }))
    const items = express4.Router()
    items.get('/items/:id', (_req, res) => {
      res.json({ ok: true })
    })
    app.use('/api', items)
    const tenant = express4.Router()
    tenant.get('/x', (_req, res) => {
      res.json({ ok: true })
    })
    // Parameters in a mount path reach req.baseUrl as the client sent them.
    app.use('/t/:tenant', tenant)
    app.get('/orders/:id', (_req, res) => {
      res.json({ ok: true })
    })
    const server = await listen(app as never)
    try {
      for (const path of ['/api/items/1', '/API/items/2', '/Api/items/3', '/aPi/items/4']) {
        expect((await fetch(`${server.origin}${path}`)).status).toBe(200)
      }
      const tenants = MAX_ROUTE_LABELS + 5
      for (let i = 0; i < tenants; i++) expect((await fetch(`${server.origin}/t/${i}/x`)).status).toBe(200)
      // A route first seen after a client sent all those tenants still gets its own label.
      expect((await fetch(`${server.origin}/orders/1`)).status).toBe(200)
      await new Promise((resolve) => setTimeout(resolve, 50))
      const text = await registry.metrics()
      expect(value(text, 'ballast_deadline_requests_total{route="/api/items/:id",method="GET"}')).toBe(4)
      expect(text).not.toMatch(/route="\/(API|Api|aPi)\//)
      expect(value(text, 'ballast_deadline_requests_total{route="/orders/:id",method="GET"}')).toBe(1)
      const routes = new Set(
        text
          .split('\n')
          .filter((line) => line.startsWith('ballast_deadline_requests_total{'))
          .map((line) => /route="([^"]*)"/.exec(line)?.[1]),
      )
      // /api/items/:id, /orders/:id, the first MAX_MOUNTS_PER_ROUTE tenants, and <mount>/x for the others.
      expect(routes.size).toBe(2 + MAX_MOUNTS_PER_ROUTE + 1)
      expect(routes.has(OTHER_ROUTES)).toBe(false)
      expect(value(text, `ballast_deadline_requests_total{route="${OTHER_MOUNT}/x",method="GET"}`)).toBe(tenants - MAX_MOUNTS_PER_ROUTE)
    } finally {
      await server.close()
    }
  })

  it('caps the route labels of one middleware at MAX_ROUTE_LABELS; later routes are counted under <other>', async () => {
    const registry = new Registry()
    const app = express4()
    app.use(deadline({ timeout: 1_000, registry }))
    const count = MAX_ROUTE_LABELS + 5
    for (let i = 0; i < count; i++) {
      app.get(`/r${i}`, (_req, res) => {
        res.json({ ok: true })
      })
    }
    const server = await listen(app as never)
    try {
      for (let i = 0; i < count; i++) expect((await fetch(`${server.origin}/r${i}`)).status).toBe(200)
      await new Promise((resolve) => setTimeout(resolve, 50))
      const text = await registry.metrics()
      expect(value(text, 'ballast_deadline_requests_total{route="/r0",method="GET"}')).toBe(1)
      expect(value(text, `ballast_deadline_requests_total{route="/r${MAX_ROUTE_LABELS - 1}",method="GET"}`)).toBe(1)
      expect(value(text, `ballast_deadline_requests_total{route="${OTHER_ROUTES}",method="GET"}`)).toBe(count - MAX_ROUTE_LABELS)
    } finally {
      await server.close()
    }
  })

  it('exports requestDeadline, which finds the request deadline without the type augmentation', async () => {
    const app = express4()
    let seen: unknown
    app.use(deadline({ timeout: 1_000, registry: new Registry() }))
    app.get('/', (req, res) => {
      seen = api.requestDeadline(req)?.remaining()
      res.end()
    })
    const server = await listen(app as never)
    try {
      expect((await fetch(server.origin)).status).toBe(200)
      expect(typeof seen).toBe('number')
      expect(api.requestDeadline({})).toBeUndefined()
    } finally {
      await server.close()
    }
  })
})

describe.each(expressVersions)('on %s: a routed request answered by an app-level error handler', (_name, express) => {
  it('is counted under its full route label, mount path included', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 1_000, registry }))
    const api = express.Router()
    api.get('/orders/:id', (_req, _res, next) => next(new Error('not in stock')))
    app.use('/api', api)
    app.use((_error: unknown, _req: unknown, res: { status(code: number): { json(body: unknown): void } }, _next: unknown) => {
      res.status(500).json({ error: 'failed' })
    })
    const server = await listen(app as never)
    try {
      const res = await fetch(`${server.origin}/api/orders/1`)
      expect(res.status).toBe(500)
      await res.text()
      await sleep(50)
      const metric = (await registry.getSingleMetric('ballast_deadline_requests_total')?.get()) as {
        values: { labels: Record<string, unknown>; value: number }[]
      }
      expect(metric.values.filter((v) => v.value > 0).map((v) => [v.labels.route, v.value])).toEqual([['/api/orders/:id', 1]])
    } finally {
      await server.close()
    }
  })
})

async function values(registry: Registry, name: string) {
  const metric = (await registry.getSingleMetric(name)?.get()) as { values: { labels: Record<string, unknown>; value: number }[] }
  return metric.values
}

describe.each(expressVersions)('on %s: late next(err) from a route of a mounted router', (_name, express) => {
  it('counts the late write under the route label the request was counted under, creating no new route series', async () => {
    const registry = new Registry()
    const app = express()
    app.set('env', 'test')
    app.use(deadline({ timeout: 30, registry }))
    const api = express.Router()
    api.get('/orders/:id', (_req, _res, next) => {
      setTimeout(() => next(new Error('late failure')), 80)
    })
    app.use('/api', api)
    const server = await listen(app as never)
    try {
      const res = await fetch(`${server.origin}/api/orders/1`)
      expect(res.status).toBe(504)
      await res.text()
      await sleep(200)
      const late = (await values(registry, 'ballast_deadline_late_writes_total')).filter((v) => v.value > 0)
      const routes = new Set((await values(registry, 'ballast_deadline_requests_total')).map((v) => v.labels.route))
      expect({ late: late.map((v) => [v.labels.route, v.value]), routes: [...routes] }).toEqual({
        late: [['/api/orders/:id', 1]],
        routes: ['/api/orders/:id'],
      })
    } finally {
      await server.close()
    }
  })
})

const counted = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

describe.each(expressVersions)('mixed traffic on %s', (_name, express) => {
  it('moves every counter by exactly the traffic sent, and 404 labels stay bounded', async () => {
    const registry = new Registry()
    const app = express()
    app.set('env', 'test')
    app.use(deadline({ timeout: 200, registry }))
    app.get('/ok', (_req, res) => res.json({ ok: true }))
    app.get('/slow', (_req, res) => {
      setTimeout(() => res.json({ late: true }), 400)
    })
    app.get('/nested', deadline({ timeout: 30, registry }), (_req, res) => {
      setTimeout(() => res.json({ late: true }), 100)
    })
    app.get('/hang', (_req, res) => {
      const t = setTimeout(() => res.end(), 5_000)
      res.on('close', () => clearTimeout(t))
    })
    const api = express.Router()
    api.get('/x/:id', (_req, res) => res.json({ ok: true }))
    app.use('/api', api)
    const server = await listen(app as never)
    try {
      const get = (path: string, headers: Record<string, string> = {}) =>
        fetch(server.origin + path, { headers }).then(async (r) => {
          await r.arrayBuffer()
          return r.status
        })
      expect(await Promise.all([get('/ok'), get('/ok'), get('/ok', { 'request-timeout-ms': '150' })])).toEqual([200, 200, 200])
      expect(await get('/slow')).toBe(504)
      expect(await get('/slow', { 'request-timeout-ms': '20' })).toBe(504)
      expect(await get('/nested')).toBe(504)
      expect(await get('/ok', { 'request-timeout-ms': 'abc' })).toBe(200)
      expect(await get('/ok', { 'request-timeout-ms': '0' })).toBe(504)
      for (let i = 0; i < 300; i++) expect(await get(`/random/${Math.random()}`)).toBe(404)
      for (let i = 0; i < 50; i++) expect(await get(`/api/nope/${i}`)).toBe(404)
      // client close on /hang
      await new Promise<void>((resolve) => {
        const req = httpRequest(`${server.origin}/hang`)
        req.on('error', () => resolve())
        req.end()
        setTimeout(() => {
          req.destroy()
          resolve()
        }, 50)
      })
      await sleep(500)
      const text = await registry.metrics()
      const got = {
        ok: counted(text, 'ballast_deadline_requests_total{route="/ok",method="GET"}'),
        slow: counted(text, 'ballast_deadline_requests_total{route="/slow",method="GET"}'),
        nested: counted(text, 'ballast_deadline_requests_total{route="/nested",method="GET"}'),
        hang: counted(text, 'ballast_deadline_requests_total{route="/hang",method="GET"}'),
        unmatched: counted(text, 'ballast_deadline_requests_total{route="<unmatched>",method="GET"}'),
        slowDeadline: counted(text, 'ballast_deadline_exceeded_total{route="/slow",method="GET",reason="deadline"}'),
        slowInherited: counted(text, 'ballast_deadline_exceeded_total{route="/slow",method="GET",reason="inherited"}'),
        nestedDeadline: counted(text, 'ballast_deadline_exceeded_total{route="/nested",method="GET",reason="deadline"}'),
        expired: counted(text, 'ballast_deadline_exceeded_total{route="<unmatched>",method="GET",reason="inherited"}'),
        invalid: counted(text, 'ballast_deadline_header_rejected_total{reason="invalid"}'),
        expiredHeader: counted(text, 'ballast_deadline_header_rejected_total{reason="expired"}'),
        closed: counted(text, 'ballast_deadline_client_closed_total{route="/hang",method="GET"}'),
        late:
          counted(text, 'ballast_deadline_late_writes_total{route="/slow"}') +
          counted(text, 'ballast_deadline_late_writes_total{route="/nested"}'),
        budgetHeader: counted(text, 'ballast_deadline_budget_seconds_count{route="/ok",source="header"}'),
        nestedBudget30ms: counted(text, 'ballast_deadline_budget_seconds_bucket{le="0.05",route="/nested",source="default"}'),
      }
      expect(got).toEqual({
        ok: 4 + 0,
        slow: 2,
        nested: 1,
        hang: 1,
        unmatched: 351,
        slowDeadline: 1,
        slowInherited: 1,
        nestedDeadline: 1,
        expired: 1,
        invalid: 1,
        expiredHeader: 1,
        closed: 1,
        late: 3,
        budgetHeader: 1,
        nestedBudget30ms: 1,
      })
      const routes = new Set([...text.matchAll(/route="([^"]*)"/g)].map((m) => m[1]))
      expect([...routes].sort()).toEqual(
        ['/api/x/:id', '/hang', '/nested', '/ok', '/slow', '<unmatched>'].filter((r) => r !== '/api/x/:id').sort(),
      )
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
      expect(`${promtool.stdout}${promtool.stderr}`.trim()).toBe('')
    } finally {
      await server.close()
    }
  })
})

async function labelsCounted(registry: Registry): Promise<string[]> {
  const metric = (await registry.getSingleMetric('ballast_deadline_requests_total')?.get()) as {
    values: { labels: Record<string, unknown>; value: number }[]
  }
  return [...new Set(metric.values.filter((v) => v.value > 0).map((v) => String(v.labels.route)))].sort()
}

describe.each(expressVersions)('on %s: ordinary 200s of a route mounted at the root', (_name, express) => {
  it('absolute-form request targets (client-chosen host) do not make route labels', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 1_000, registry }))
    app.get('/orders/:id', (_req, res) => res.json({ ok: true }))
    app.get('/health', (_req, res) => res.json({ ok: true }))
    const server = await listen(app as never)
    try {
      for (const host of ['a.example', 'b.example', 'c.example']) {
        // Alternate routes so the one-entry cache does not hide the label computation.
        const one = await rawExchange(server.port, `GET http://${host}/orders/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
        expect(one.text).toMatch(/^HTTP\/1\.1 200/)
        await rawExchange(server.port, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      }
      await sleep(50)
      expect(await labelsCounted(registry)).toEqual(['/health', '/orders/:id'])
    } finally {
      await server.close()
    }
  })

  it('a URL-rewriting middleware (a stripped /v1 or locale prefix) keeps the route template as label', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 1_000, registry }))
    app.use((req, _res, next) => {
      req.url = req.url.replace(/^\/[a-z]{2}(?=\/)/, '')
      next()
    })
    app.get('/orders/:id', (_req, res) => res.json({ ok: true }))
    const server = await listen(app as never)
    try {
      for (const path of ['/en/orders/1', '/fr/orders/2', '/de/orders/3']) {
        const res = await fetch(server.origin + path)
        expect(res.status).toBe(200)
        await res.text()
      }
      await sleep(50)
      expect(await labelsCounted(registry)).toEqual(['/orders/:id'])
    } finally {
      await server.close()
    }
  })
})

const rawGet = (target: string) => `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`

describe.each(expressVersions)('on %s: client-chosen text after the path never reaches a route label', (_name, express) => {
  it('a fragment (#...) in the request target of a 200 inside a router', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 1_000, registry }))
    const router = express.Router()
    router.get('/orders/:id', (_req, res) => res.json({ ok: true }))
    app.use('/api', router)
    app.get('/health', (_req, res) => res.json({ ok: true }))
    const server = await listen(app as never)
    try {
      for (let id = 0; id < 9; id++) {
        const one = await rawExchange(server.port, rawGet(`/api/orders/${id}#/a/b`))
        expect(one.text).toMatch(/^HTTP\/1\.1 200/)
        await rawExchange(server.port, rawGet('/health')) // defeats the one-entry cache
      }
      // The application's own traffic, after a client used up the route's mounts.
      expect((await rawExchange(server.port, rawGet('/api/orders/1'))).text).toMatch(/^HTTP\/1\.1 200/)
      await sleep(50)
      expect(await labelsCounted(registry)).toEqual(['/api/orders/:id', '/health'])
    } finally {
      await server.close()
    }
  })

  it('an absolute-form target with no path before its query (http://host?/a/b) on a route mounted at /', async () => {
    const registry = new Registry()
    const app = express()
    app.use(deadline({ timeout: 1_000, registry }))
    app.get('/', (_req, res) => res.json({ ok: true }))
    app.get('/health', (_req, res) => res.json({ ok: true }))
    const server = await listen(app as never)
    try {
      for (const q of ['/a/b', '/c/d', '/e/f']) {
        const one = await rawExchange(server.port, rawGet(`http://h?${q}`))
        expect(one.text).toMatch(/^HTTP\/1\.1 200/)
        await rawExchange(server.port, rawGet('/health'))
      }
      await sleep(50)
      expect(await labelsCounted(registry)).toEqual(['/', '/health'])
    } finally {
      await server.close()
    }
  })
})

describe('deadline() metrics an application made with exemplars (registered before deadline(), which adopts them)', () => {
  it('a late write after the 504 is still a silent no-op, and every series keeps its labels', async () => {
    // prom-client's typings give Registry no constructor argument; it takes the content type.
    const registry = new (Registry as unknown as new (type: string) => Registry)(Registry.OPENMETRICS_CONTENT_TYPE)
    const exemplars = { enableExemplars: true, help: 'h', registers: [registry] }
    new Histogram({ name: 'ballast_deadline_overrun_seconds', labelNames: ['route'], buckets: [0.1, 1], ...exemplars })
    new Counter({ name: 'ballast_deadline_late_writes_total', labelNames: ['route'], ...exemplars })
    new Counter({ name: 'ballast_deadline_exceeded_total', labelNames: ['route', 'method', 'reason'], ...exemplars })
    new Counter({ name: 'ballast_deadline_header_rejected_total', labelNames: ['reason'], ...exemplars })
    let lateWrite!: (outcome: unknown) => void
    const lateWritten = new Promise((resolve) => (lateWrite = resolve))
    const app = express4()
    app.use(deadline({ timeout: 30, registry }))
    app.get('/slow', (req, res) => {
      // Writes once the deadline has run out and been answered, whatever the timing.
      requestDeadline(req)?.signal.addEventListener('abort', () =>
        setImmediate(() => {
          try {
            res.json({ late: true })
            lateWrite('ignored')
          } catch (error) {
            lateWrite(error)
          }
        }),
      )
    })
    app.get('/ok', (_req, res) => {
      res.json({ ok: true })
    })
    const server = await listen(app as never)
    try {
      expect((await fetch(`${server.origin}/slow`)).status).toBe(504)
      expect(await lateWritten).toBe('ignored')
      expect((await fetch(`${server.origin}/ok`, { headers: { 'request-timeout-ms': 'soon' } })).status).toBe(200)
      const text = await registry.metrics()
      expect(text).toContain('ballast_deadline_late_writes_total{route="/slow"} 1')
      expect(text).toContain('ballast_deadline_overrun_seconds_count{route="/slow"} 1')
      expect(text).toContain('ballast_deadline_exceeded_total{route="/slow",method="GET",reason="deadline"} 1')
      expect(text).toContain('ballast_deadline_header_rejected_total{reason="invalid"} 1')
      expect(text).not.toMatch(/^ballast_deadline_\w+(_total|_count) \d/m)
    } finally {
      await server.close()
    }
  })
})
