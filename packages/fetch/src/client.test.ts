import { createHash } from 'node:crypto'
import { getEventListeners } from 'node:events'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Breaker, BrokenCircuitError } from '@ballast/breaker'
import { Deadline, DeadlineExceededError } from '@ballast/deadline'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { FetchBudgetError, FetchNetworkError, FetchStatusError, FetchTimeoutError } from './errors.js'
import { createClient } from './index.js'
import { abortReasonSpy, activeResources, backToBaseline, closedPort, metric, promtool, type Upstream, upstream } from './test-support.js'

let a: Upstream
let b: Upstream
let baseline: string[]
/** Request bodies received by `/put`, in order. */
const bodies: string[] = []

/** Polls `check` until it holds or `within` ms pass; whether it held. */
async function until(check: () => boolean | Promise<boolean>, within = 2_000): Promise<boolean> {
  const started = performance.now()
  while (!(await check())) {
    if (performance.now() - started > within) return false
    await sleep(10)
  }
  return true
}

const timers = () => activeResources().filter((type) => type === 'Timeout').length

beforeAll(async () => {
  baseline = activeResources()
  const routes = {
    '/echo': (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          method: req.method,
          budget: req.headers['request-timeout-ms'] ?? null,
          custom: req.headers['x-budget'] ?? null,
        }),
      )
    },
    '/500': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(500).end('down'),
    '/600': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(600).end('odd'),
    '/999': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(999).end('odd'),
    '/504': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(504).end('out of budget'),
    '/busy': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(503, { 'retry-after': '4' }).end('busy'),
    '/missing': (_req: unknown, res: import('node:http').ServerResponse) =>
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no such thing"}'),
    '/drip': (_req: unknown, res: import('node:http').ServerResponse) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      let n = 0
      const timer = setInterval(() => res.write(`chunk ${n++}\n`), 40)
      res.on('close', () => clearInterval(timer))
    },
    '/hang': () => {
      // Never answers: only the client's abort (or the server's close) ends it.
    },
    '/put': (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (chunk: string) => {
        body += chunk
      })
      req.on('end', () => {
        bodies.push(body)
        res.writeHead(503).end('busy')
      })
    },
    // Redirects: each answers with its status and a Location.
    '/r302': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(302, { location: '/body' }).end(),
    '/r303': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(303, { location: '/body' }).end(),
    '/r307': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(307, { location: '/body' }).end(),
    '/loop': (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(302, { location: '/loop' }).end(),
    '/to-other-origin': (_req: unknown, res: import('node:http').ServerResponse) =>
      res.writeHead(307, { location: `${b.url}/headers` }).end(),
    '/slow-redirect': (_req: unknown, res: import('node:http').ServerResponse) => {
      const timer = setTimeout(() => res.writeHead(302, { location: '/echo' }).end(), 150)
      res.on('close', () => clearTimeout(timer))
    },
    '/body': (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (chunk: string) => {
        body += chunk
      })
      req.on('end', () =>
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ method: req.method, body, type: req.headers['content-type'] ?? null })),
      )
    },
    '/headers': (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          authorization: req.headers.authorization ?? null,
          cookie: req.headers.cookie ?? null,
          custom: req.headers['x-custom'] ?? null,
          budget: req.headers['request-timeout-ms'] ?? null,
        }),
      ),
    '/to-userinfo': (_req: unknown, res: import('node:http').ServerResponse) =>
      res.writeHead(302, { location: b.url.replace('//', '//user:secret@') }).end(),
    '/to-userinfo-same-origin': (_req: unknown, res: import('node:http').ServerResponse) =>
      res.writeHead(302, { location: `${a.url.replace('//', '//user:secret@')}/echo` }).end(),
    '/busy-once': (_req: unknown, res: import('node:http').ServerResponse, hit: number) => {
      if (hit === 1) res.writeHead(503, { 'retry-after': '1' }).end('busy')
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    },
    '/slow': (_req: unknown, res: import('node:http').ServerResponse) => {
      const timer = setTimeout(() => res.writeHead(200).end('late'), 300)
      res.on('close', () => clearTimeout(timer))
    },
  }
  a = await upstream(routes)
  b = await upstream(routes)
})

afterAll(async () => {
  await a.close()
  await b.close()
  expect(await backToBaseline(baseline)).toEqual([])
})

describe('createClient options', () => {
  it('rejects bad options at construction, naming the option and the value', () => {
    // An option given as undefined is absent (a config value passed through), in the types too.
    const config: { timeout?: number; header?: string } = {}
    createClient({
      name: 'passed-through',
      baseUrl: undefined,
      timeout: config.timeout,
      breaker: undefined,
      retry: { attempts: 1, delay: undefined, maxDelay: undefined, methods: undefined },
      propagate: { header: config.header, margin: undefined },
      minBudget: undefined,
      isFailure: undefined,
      fetch: undefined,
      registry: undefined,
      prefix: undefined,
    })[Symbol.dispose]()
    expect(() => createClient(undefined as never)).toThrow(TypeError)
    expect(() => createClient({} as never)).toThrow(/"name".*undefined/)
    expect(() => createClient({ name: 'has space' })).toThrow(/"name".*'has space'/)
    expect(() => createClient({ name: 'c', baseUrl: 'not a url' })).toThrow(/"baseUrl".*'not a url'/)
    expect(() => createClient({ name: 'c', baseUrl: 'ftp://x' })).toThrow(RangeError)
    expect(() => createClient({ name: 'c', timeout: 0 })).toThrow(/"timeout".*0/)
    expect(() => createClient({ name: 'c', timeout: '5' as never })).toThrow(TypeError)
    expect(() => createClient({ name: 'c', retry: { attempts: -1 } })).toThrow(/"retry.attempts".*-1/)
    expect(() => createClient({ name: 'c', retry: {} as never })).toThrow(/"retry.attempts"/)
    expect(() => createClient({ name: 'c', retry: { attempts: 1, delay: -5 } })).toThrow(/"retry.delay".*-5/)
    expect(() => createClient({ name: 'c', retry: { attempts: 1, methods: 'GET' as never } })).toThrow(/"retry.methods".*'GET'/)
    expect(() => createClient({ name: 'c', propagate: { header: 'bad header' } })).toThrow(/"propagate.header".*'bad header'/)
    expect(() => createClient({ name: 'c', propagate: { margin: -1 } })).toThrow(/"propagate.margin".*-1/)
    expect(() => createClient({ name: 'c', propagate: true as never })).toThrow(/"propagate".*true/)
    expect(() => createClient({ name: 'c', minBudget: Number.NaN })).toThrow(/"minBudget".*NaN/)
    expect(() => createClient({ name: 'c', timeout: 50, minBudget: 80 })).toThrow(/"minBudget" must be <= timeout \(50\), got 80/)
    expect(() => createClient({ name: 'c', isFailure: 5 as never })).toThrow(/"isFailure".*5/)
    expect(() => createClient({ name: 'c', fetch: 'fetch' as never })).toThrow(/"fetch".*'fetch'/)
    expect(() => createClient({ name: 'c', breaker: 'yes' as never })).toThrow(/"breaker".*'yes'/)
    expect(() => createClient({ name: 'c', breaker: { timeout: 5 } as never })).toThrow(/"breaker.timeout".*5/)
    expect(() => createClient({ name: 'c', baseUrl: 'http://127.0.0.1:1', breaker: { maxKeys: 0 } })).toThrow(/"breaker.maxKeys".*0/)
    expect(() => createClient({ name: 'c', baseUrl: 'http://127.0.0.1:1', breaker: { idleTimeout: 10 } })).toThrow(
      /"breaker.idleTimeout".*10/,
    )
    expect(() => createClient({ name: 'c', breaker: { volumeThreshold: -2 }, baseUrl: 'http://x' })).toThrow(/volumeThreshold.*-2/)
    expect(() => createClient({ name: 'c', registry: {} as never })).toThrow(/"registry"/)
    expect(() => createClient({ name: 'c', timout: 800 } as never)).toThrow(/unknown option "timout" \(did you mean "timeout"\?\), got 800/)
    expect(() => createClient({ name: 'c', breaker: { resetTimout: 5 } } as never)).toThrow(
      /unknown option "breaker.resetTimout" \(did you mean "breaker.resetTimeout"\?\)/,
    )
    expect(() => createClient({ name: 'c', retry: { attempts: 1, method: ['POST'] } } as never)).toThrow(
      /unknown option "retry.method" \(did you mean "retry.methods"\?\)/,
    )
    expect(() => createClient({ name: 'c', propagate: { headr: 'x-budget' } } as never)).toThrow(/unknown option "propagate.headr"/)
  })

  it('refuses an init that is not an object, sending nothing; null is no init, as for fetch', async () => {
    const c = createClient({ name: 'init', baseUrl: a.url, registry: new Registry() })
    const hits = a.hits('/echo')
    await expect(c.fetch('/echo', 'POST' as never)).rejects.toThrow(new TypeError(`init.fetch: "init" must be an object, got 'POST'`))
    await expect(c.json('/echo', 5 as never)).rejects.toThrow(new TypeError('init.json: "init" must be an object, got 5'))
    expect(a.hits('/echo')).toBe(hits)
    expect(await c.json('/echo', null as never)).toMatchObject({ method: 'GET' })
    c[Symbol.dispose]()
  })

  it("refuses a per-call timeout below the client's minBudget, which no call could ever be sent under", async () => {
    const registry = new Registry()
    const c = createClient({ name: 'mb', baseUrl: a.url, registry, minBudget: 50 })
    const hits = a.hits('/echo')
    await expect(c.fetch('/echo', { timeout: 20 })).rejects.toThrow(
      new RangeError(`mb.fetch: option "timeout" must be >= the client's minBudget (50), got 20`),
    )
    expect(await metric(registry, 'ballast_fetch_fail_fast_total', {})).toBe(0)
    expect(await c.json('/echo', { timeout: 50 })).toMatchObject({ method: 'GET' })
    expect(a.hits('/echo')).toBe(hits + 1)
    c[Symbol.dispose]()
  })

  it('creates every label set at 0 before traffic, and the exposition passes promtool', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'inventory', baseUrl: a.url, registry })
    const text = await registry.metrics()
    for (const cls of ['2xx', '3xx', '4xx', '5xx', 'error', 'fallback']) {
      expect(text).toContain(`ballast_fetch_requests_total{client="inventory",method="GET",status_class="${cls}"} 0`)
    }
    expect(text).toContain('ballast_fetch_fail_fast_total{client="inventory"} 0')
    expect(text).toContain('ballast_breaker_state{breaker="inventory",state="closed"} 1')
    const check = await promtool(text)
    expect(check.output).toBe('')
    expect(check.code).toBe(0)
    c[Symbol.dispose]()
  })
})

describe('deadline propagation', () => {
  it('sends the attempt budget, never more than the deadline leaves at send time', async () => {
    const c = createClient({ name: 'echo', baseUrl: a.url, registry: new Registry(), timeout: 5_000 })
    using deadline = Deadline.after(300)
    const body = await deadline.run(async () => {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const before = deadline.remaining()
      const result = await c.json<{ budget: string }>('/echo')
      return { ...result, before }
    })
    const sent = Number(body.budget)
    expect(body.budget).toMatch(/^\d{1,10}$/)
    expect(sent).toBeLessThanOrEqual(Math.floor(body.before))
    expect(sent).toBeLessThanOrEqual(250)
    expect(sent).toBeGreaterThan(100)
    c[Symbol.dispose]()
  })

  it('without a deadline sends the timeout; a custom header; none with propagate: false', async () => {
    const plain = createClient({ name: 'echo', baseUrl: a.url, registry: new Registry(), timeout: 800 })
    const sent = Number((await plain.json<{ budget: string }>('/echo')).budget)
    expect(sent).toBeLessThanOrEqual(800) // floored at send time: 799 once a microsecond has passed
    expect(sent).toBeGreaterThanOrEqual(780)
    const custom = createClient({ name: 'echo', baseUrl: a.url, registry: new Registry(), timeout: 800, propagate: { header: 'X-Budget' } })
    expect(await custom.json('/echo')).toMatchObject({ budget: null, custom: expect.stringMatching(/^(799|800)$/) })
    const off = createClient({ name: 'echo', baseUrl: a.url, registry: new Registry(), propagate: false })
    expect(await off.json('/echo')).toMatchObject({ budget: null, custom: null })
    for (const c of [plain, custom, off]) c[Symbol.dispose]()
  })

  it("keeps a caller's own smaller budget header: the header is capped, never raised", async () => {
    const c = createClient({ name: 'echo', baseUrl: a.url, registry: new Registry(), timeout: 5_000 })
    const sent = async (value: string) =>
      Number((await c.json<{ budget: string }>('/echo', { headers: [['Request-Timeout-Ms', value]] })).budget)
    expect(await sent('50')).toBe(50)
    for (const value of ['99999', 'soon', '-1']) {
      const budget = await sent(value)
      expect(budget).toBeLessThanOrEqual(5_000)
      expect(budget).toBeGreaterThan(4_000)
    }
    c[Symbol.dispose]()
  })

  it('below minBudget fails fast without a socket, counted; a fallback answers instead', async () => {
    // An upstream of its own: every TCP connection it accepts is this test's.
    const own = await upstream({ '/echo': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}') })
    const registry = new Registry()
    const c = createClient({ name: 'echo', baseUrl: own.url, registry, minBudget: 100 })
    try {
      using deadline = Deadline.after(60)
      const error = await deadline.run(() => c.fetch('/echo')).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(FetchBudgetError)
      expect((error as FetchBudgetError).code).toBe('BALLAST_FETCH_BUDGET')
      const cached = await deadline.run(() => c.json('/echo', { fallback: () => Response.json({ cached: 1 }) }))
      expect(cached).toEqual({ cached: 1 })
      // No socket: not a request, not even a TCP connection reached the server.
      expect(own.connections()).toBe(0)
      expect(own.hits('/echo')).toBe(0)
      expect(await metric(registry, 'ballast_fetch_fail_fast_total', { client: 'echo' })).toBe(2)
      expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'GET', status_class: 'fallback' })).toBe(1)
      expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
      // The count is live: a call with budget opens one, and only one. A socket the fail-fast calls
      // had opened (and dropped) would have been accepted before it: the server accepts in order.
      expect(await c.json('/echo')).toEqual({})
      expect(own.connections()).toBe(1)
      expect(own.hits('/echo')).toBe(1)
    } finally {
      c[Symbol.dispose]()
      await own.close()
    }
  })

  it('under a disposed deadline whose time ran out (work the request left running) fails fast with DeadlineExceededError', async () => {
    const own = await upstream({ '/echo': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}') })
    const registry = new Registry()
    const c = createClient({ name: 'echo', baseUrl: own.url, registry })
    try {
      const deadline = Deadline.after(30)
      deadline[Symbol.dispose]() // the request was answered; a background job still sees it as current
      await sleep(50)
      const error = await deadline.run(() => c.json('/echo')).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(DeadlineExceededError)
      expect((error as DeadlineExceededError).source).toBe('local')
      expect(deadline.signal.aborted).toBe(false)
      expect(own.connections()).toBe(0)
      expect(await metric(registry, 'ballast_fetch_fail_fast_total', { client: 'echo' })).toBe(1)
      expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    } finally {
      c[Symbol.dispose]()
      await own.close()
    }
  })

  it('keeps the margin back: under a deadline the attempt ends on its own budget, before the deadline does', async () => {
    /** Why each attempt's signal (the one handed to fetch) aborted. */
    const { fetch: spy, reasons } = abortReasonSpy()
    const registry = new Registry()
    // A timeout just under the caller's 300 ms, with the default 10 ms margin: min(295, 300 - 10)
    // makes the deadline the bound. Without the margin the timeout (295) would be, and the attempt
    // would end on it, 5 ms before the deadline, as a FetchTimeoutError counted as a failure.
    const c = createClient({ name: 'margin', baseUrl: a.url, registry, timeout: 295, fetch: spy })
    const hits = a.hits('/hang')
    const sent = a.budgets('/hang').length
    using deadline = Deadline.after(300)
    const { error, before } = await deadline.run(async () => {
      const before = deadline.remaining()
      return { error: await c.fetch('/hang').catch((e: unknown) => e), before }
    })
    expect(a.hits('/hang') - hits).toBe(1)
    // The callee was told at most what the caller had left, minus the margin.
    const [budget] = a.budgets('/hang').slice(sent)
    expect(budget).toBeLessThanOrEqual(Math.floor(before) - 10)
    expect(budget).toBeGreaterThan(200)
    // The attempt's budget was the deadline's remaining time minus the margin, so its own timer
    // aborted it, 10 ms before the deadline expired: the reason is the client's (a
    // DeadlineExceededError, the deadline being the bound), neither the deadline's own expiry nor
    // the client's timeout.
    expect(reasons).toHaveLength(1)
    expect(reasons[0]).toBeInstanceOf(DeadlineExceededError)
    expect((reasons[0] as Error).message).toBe('deadline exceeded: no budget left to wait for "margin"')
    expect(reasons[0]).not.toBe(deadline.signal.reason)
    // The caller hears of its deadline either way. (Which of the two reasons reaches it is a race
    // under load: the breaker's attempt also ends when the deadline does, 10 ms after the abort,
    // and may hear of it before the aborted fetch settles.)
    expect(error).toBeInstanceOf(DeadlineExceededError)
    // The caller's deadline, not the dependency: ignored by the breaker.
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(1)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    c[Symbol.dispose]()
  })

  it("inside an application's Breaker, the attempt cut at the caller's deadline (less the margin) is not a dependency failure there", async () => {
    const registry = new Registry()
    const client = createClient({ name: 'inner', baseUrl: a.url, registry, breaker: false, propagate: { margin: 50 } })
    const outer = new Breaker<string>({ name: 'outer', registry, volumeThreshold: 1, errorThresholdPercentage: 0 })
    using caller = Deadline.after(300)
    const result = await caller.run(() =>
      outer
        .execute(() => client.fetch('/hang').then((response) => response.text()))
        .catch((error: unknown) => `rejected:${(error as Error).name}`),
    )
    expect(result).toBe('rejected:DeadlineExceededError')
    expect(outer.state).toBe('closed')
    expect(await metric(registry, 'ballast_breaker_calls_total', { breaker: 'outer', outcome: 'timeout' })).toBe(0)
    expect(await metric(registry, 'ballast_breaker_calls_total', { breaker: 'outer', outcome: 'failure' })).toBe(0)
    outer[Symbol.dispose]()
    client[Symbol.dispose]()
  })

  it('sends every retry the budget measured at its own send: decreasing, never more than is left', async () => {
    /** What the caller's deadline had left each time the client handed a request to fetch. */
    const left: number[] = []
    const spy: typeof fetch = (input, init) => {
      left.push(Deadline.current()?.remaining() ?? Number.NaN)
      return fetch(input, init)
    }
    const breaker = { volumeThreshold: 1_000 }
    const c = createClient({
      name: 'retry',
      baseUrl: a.url,
      registry: new Registry(),
      timeout: 5_000,
      retry: { attempts: 2, delay: 40 },
      breaker,
      fetch: spy,
    })
    const sent = a.budgets('/500').length
    using deadline = Deadline.after(1_000)
    const { response, before } = await deadline.run(async () => {
      const before = deadline.remaining()
      return { response: await c.fetch('/500'), before }
    })
    expect(response.status).toBe(500)
    await response.text()
    const budgets = a.budgets('/500').slice(sent)
    expect(budgets).toHaveLength(3)
    expect(left).toHaveLength(3)
    expect(budgets[0]).toBeLessThanOrEqual(Math.floor(before) - 10)
    for (const [n, budget] of budgets.entries()) {
      expect(budget).toBeGreaterThan(0)
      expect(budget).toBeLessThanOrEqual(Math.floor(left[n] as number))
    }
    expect(budgets[1]).toBeLessThan(budgets[0] as number)
    expect(budgets[2]).toBeLessThan(budgets[1] as number)
    c[Symbol.dispose]()
  })

  it("the caller's signal aborting is neither a failure nor retried, and gets no fallback", async () => {
    const registry = new Registry()
    const c = createClient({ name: 'slow', baseUrl: a.url, registry, retry: { attempts: 3 } })
    const hits = a.hits('/slow')
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('user left')), 50)
    const error = await c.fetch('/slow', { signal: controller.signal, fallback: () => Response.json(1) }).catch((e: unknown) => e)
    expect((error as Error).message).toBe('user left')
    expect(a.hits('/slow') - hits).toBe(1)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(1)
    c[Symbol.dispose]()
  })
})

describe('body coverage', () => {
  it('a streaming read through response.body is cut at the attempt budget', async () => {
    const c = createClient({ name: 'stream', baseUrl: a.url, registry: new Registry(), timeout: 300 })
    const started = performance.now()
    const response = await c.fetch('/drip')
    const chunks: string[] = []
    const decoder = new TextDecoder()
    const error = await (async () => {
      for await (const chunk of response.body as ReadableStream<Uint8Array>) chunks.push(decoder.decode(chunk))
    })().catch((e: unknown) => e)
    const elapsed = performance.now() - started
    expect(error).toBeInstanceOf(FetchTimeoutError)
    expect(chunks.length).toBeGreaterThan(0) // data flowed until the budget ran out
    expect(elapsed).toBeGreaterThanOrEqual(290)
    expect(elapsed).toBeLessThan(300 + 500) // the budget, plus room for a loaded machine
    c[Symbol.dispose]()
  })

  it("a streaming read is cut when the caller's deadline ends first", async () => {
    const registry = new Registry()
    const c = createClient({ name: 'stream', baseUrl: a.url, registry, timeout: 5_000 })
    using deadline = Deadline.after(250)
    const response = await deadline.run(() => c.fetch('/drip'))
    const error = await response.text().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DeadlineExceededError)
    // fetch() mode: the breaker judged the call at the headers (a success), before the body was cut.
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'success' })).toBe(1)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    c[Symbol.dispose]()
  })

  it("json(): a body read cut by the caller's deadline is ignored by the breaker, not a failure, and not retried", async () => {
    const registry = new Registry()
    const c = createClient({ name: 'stream', baseUrl: a.url, registry, timeout: 5_000, retry: { attempts: 2, delay: 1 } })
    const hits = a.hits('/drip')
    using deadline = Deadline.after(250)
    const error = await deadline.run(() => c.json('/drip')).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DeadlineExceededError)
    expect(a.hits('/drip') - hits).toBe(1)
    // json() reads the body inside the attempt: the breaker's verdict waits for it.
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(1)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'success' })).toBe(0)
    c[Symbol.dispose]()
  })

  it('cancelling an unread body releases the attempt at once', async () => {
    const c = createClient({ name: 'stream', baseUrl: a.url, registry: new Registry(), timeout: 5_000 })
    const timers = () => activeResources().filter((type) => type === 'Timeout').length
    const before = timers()
    const response = await c.fetch('/drip')
    expect(timers()).toBe(before + 1) // the attempt's budget timer, alive past the headers
    await response.body?.cancel()
    expect(timers()).toBe(before)
    c[Symbol.dispose]()
  })

  it.each([600, 999])(
    'a status outside what Response can be built with (%i) reaches the caller as sent, counted 5xx as RFC 9110 reads it',
    async (status) => {
      const registry = new Registry()
      const c = createClient({ name: 'odd', baseUrl: a.url, registry, timeout: 5_000 })
      const response = await c.fetch(`/${status}`)
      expect(response.status).toBe(status)
      expect(response.ok).toBe(false)
      expect(response.url).toBe(`${a.url}/${status}`)
      const copy = response.clone()
      expect([copy.status, copy.ok, copy.url]).toEqual([status, false, response.url])
      expect(await response.text()).toBe('odd')
      expect(await copy.text()).toBe('odd')
      expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'GET', status_class: '5xx' })).toBe(1)
      expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(1)
      c[Symbol.dispose]()
    },
  )
})

describe('retries and failures', () => {
  it('a header value fetch refuses is the caller error: a TypeError as from fetch, not retried, not a breaker failure, released at once', async () => {
    const bare = await fetch(`${a.url}/echo`, { headers: { 'x-user': 'Zoë €' } }).catch((error: unknown) => error)
    expect(bare).toBeInstanceOf(TypeError)
    const registry = new Registry()
    const c = createClient({ name: 'hdr', baseUrl: a.url, registry, timeout: 7_000, retry: { attempts: 2, delay: 1 } })
    const before = timers()
    const sent = a.hits('/echo')
    for (let i = 0; i < 3; i++) {
      await expect(c.fetch('/echo', { headers: { 'x-user': 'Zoë €' } })).rejects.toBeInstanceOf(TypeError)
    }
    expect(a.hits('/echo')).toBe(sent)
    expect(timers()).toBe(before)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(3)
    expect(await metric(registry, 'ballast_fetch_retries_total', {})).toBe(0)
    expect(c.breaker?.state).toBe('closed')
    c[Symbol.dispose]()
  })

  it('a signal that is no AbortSignal is refused like fetch refuses it: nothing sent, no timer, not a breaker failure', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'sig', baseUrl: a.url, registry, timeout: 7_000 })
    const before = timers()
    const sent = a.hits('/echo')
    for (let i = 0; i < 3; i++) {
      const refused = await c.fetch('/echo', { signal: {} as AbortSignal }).catch((error: unknown) => error)
      expect(refused).toBeInstanceOf(TypeError)
      expect((refused as Error).message).toMatch(/option "signal" must be an AbortSignal, got \{\}/)
    }
    expect(a.hits('/echo')).toBe(sent)
    expect(timers()).toBe(before)
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    expect(c.breaker?.state).toBe('closed')
    c[Symbol.dispose]()
  })

  it('sends what an init inherits, as fetch reads it: a Request used as init, an object made with Object.create', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'inherit', baseUrl: a.url, registry })
    const request = new Request(`${a.url}/body`, { method: 'PUT', body: 'from a request', headers: { 'content-type': 'text/plain' } })
    expect(await c.json('/body', request)).toEqual({ method: 'PUT', body: 'from a request', type: 'text/plain' })
    const inherited = Object.create({ method: 'DELETE', headers: { 'x-custom': 'kept' } }) as RequestInit
    expect(await c.json('/echo', inherited)).toMatchObject({ method: 'DELETE' })
    expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'PUT', status_class: '2xx' })).toBe(1)
    expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'DELETE', status_class: '2xx' })).toBe(1)
    c[Symbol.dispose]()
  })

  it('a caller mistake is not hidden by a fallback: a body on a GET rejects with the TypeError fetch throws', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'mistake', baseUrl: a.url, registry })
    const sent = a.hits('/echo')
    const refused = await c.fetch('/echo', { body: 'x', fallback: () => Response.json({ from: 'fallback' }) }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(TypeError)
    expect(a.hits('/echo')).toBe(sent)
    expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'GET', status_class: 'error' })).toBe(1)
    expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'GET', status_class: 'fallback' })).toBe(0)
    c[Symbol.dispose]()
  })

  it('passes an injected fetch the members of init it may read beyond the standard ones, never ballast options', async () => {
    const seen: RequestInit[] = []
    const injected = (async (_input: unknown, init?: RequestInit) => {
      seen.push(init ?? {})
      return Response.json({ ok: true })
    }) as typeof fetch
    const c = createClient({ name: 'injected', baseUrl: 'http://injected.test', registry: new Registry(), fetch: injected })
    const next = { revalidate: 60 }
    await c.json('/x', { next } as RequestInit)
    await c.json('/x', { next, timeout: 500, fallback: () => Response.json({}) } as RequestInit)
    for (const init of seen) {
      expect((init as { next?: unknown }).next).toBe(next)
      expect(init).not.toHaveProperty('timeout')
      expect(init).not.toHaveProperty('fallback')
    }
    expect(seen).toHaveLength(2)
    c[Symbol.dispose]()
  })

  it('takes a signal of another implementation (a polyfill) that works like an AbortSignal', async () => {
    const listeners = new Set<() => void>()
    const lookalike = {
      aborted: false,
      reason: undefined as unknown,
      addEventListener: (_type: string, listener: () => void) => listeners.add(listener),
      removeEventListener: (_type: string, listener: () => void) => listeners.delete(listener),
    }
    const c = createClient({ name: 'polyfill', baseUrl: a.url, registry: new Registry() })
    expect(await c.json('/echo', { signal: lookalike as unknown as AbortSignal })).toMatchObject({ method: 'GET' })
    expect(listeners.size).toBe(0)
    c[Symbol.dispose]()
  })

  it('one listener on a signal many calls share, whatever their number, gone once they end; its abort ends them all', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    const c = createClient({ name: 'shared', baseUrl: a.url, registry: new Registry(), breaker: false })
    const shutdown = new AbortController()
    const answered = await Promise.all(Array.from({ length: 30 }, () => c.json('/echo', { signal: shutdown.signal })))
    expect(answered).toHaveLength(30)
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0)
    const hanging = Array.from({ length: 30 }, () => c.fetch('/hang', { signal: shutdown.signal }).catch((error: unknown) => error))
    expect(await until(() => a.hits('/hang') >= 30)).toBe(true)
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(1)
    const reason = new Error('shutting down')
    shutdown.abort(reason)
    for (const outcome of await Promise.all(hanging)) expect(outcome).toBe(reason)
    // Pausing before their retries too: one listener for the attempts, one for the pauses.
    const retrying = createClient({ name: 'shared-pauses', baseUrl: a.url, registry: new Registry(), retry: { attempts: 1, delay: 200 } })
    const pausing = new AbortController()
    const calls = Array.from({ length: 30 }, () => retrying.fetch('/500', { signal: pausing.signal }))
    let most = 0
    while (most < 1) {
      await sleep(5)
      most = Math.max(most, getEventListeners(pausing.signal, 'abort').length)
    }
    for (let i = 0; i < 20; i++) {
      await sleep(5)
      most = Math.max(most, getEventListeners(pausing.signal, 'abort').length)
    }
    for (const response of await Promise.all(calls)) {
      expect(response.status).toBe(500)
      await response.text() // the body read is covered: its attempt follows the signal until it ends
    }
    expect(most).toBeLessThanOrEqual(2)
    expect(getEventListeners(pausing.signal, 'abort')).toHaveLength(0)
    retrying[Symbol.dispose]()
    await sleep(0)
    process.off('warning', onWarning)
    expect(warnings.map((warning) => warning.name)).toEqual([])
    c[Symbol.dispose]()
  })

  it('a breaker that opens during a retry pause: the caller gets the 500 in hand, and no retry is counted or sent', async () => {
    const registry = new Registry()
    const c = createClient({
      name: 'pause',
      baseUrl: a.url,
      registry,
      retry: { attempts: 1, delay: 600, maxDelay: 600 },
      breaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeout: 10_000 },
    })
    const hits = a.hits('/500')
    const first = c.fetch('/500')
    expect(await until(() => a.hits('/500') === hits + 1)).toBe(true)
    // The first call now pauses 300..600 ms before its retry; a POST (never retried) opens the breaker meanwhile.
    const post = await c.fetch('/500', { method: 'POST' })
    await post.text()
    expect(c.breaker?.state).toBe('open')
    const response = await first
    expect(response.status).toBe(500)
    expect(await response.text()).toBe('down')
    expect(a.hits('/500')).toBe(hits + 2)
    expect(await metric(registry, 'ballast_fetch_retries_total', {})).toBe(0)
    c[Symbol.dispose]()
  })

  it('does not retry POST by default; retries it when listed in retry.methods', async () => {
    const hits = a.hits('/500')
    const strict = createClient({ name: 'w', baseUrl: a.url, registry: new Registry(), retry: { attempts: 2, delay: 1 } })
    // Bodies handed to the caller are read (or cancelled): until then the attempt holds its timer and socket.
    const once = await strict.fetch('/500', { method: 'POST', body: 'x' })
    expect(once.status).toBe(500)
    expect(await once.text()).toBe('down')
    expect(a.hits('/500') - hits).toBe(1)
    const loose = createClient({ name: 'w', baseUrl: a.url, registry: new Registry(), retry: { attempts: 2, delay: 1, methods: ['post'] } })
    const thrice = await loose.fetch('/500', { method: 'POST', body: 'x' })
    expect(thrice.status).toBe(500)
    await thrice.body?.cancel()
    expect(a.hits('/500') - hits).toBe(4)
    strict[Symbol.dispose]()
    loose[Symbol.dispose]()
  })

  it('retries only while the deadline leaves room for the pause: the 500 is answered at once otherwise', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'r', baseUrl: a.url, registry, retry: { attempts: 3, delay: 400, maxDelay: 400 } })
    const hits = a.hits('/500')
    using deadline = Deadline.after(150)
    const started = performance.now()
    const response = await deadline.run(() => c.fetch('/500'))
    expect(performance.now() - started).toBeLessThan(150)
    expect(response.status).toBe(500)
    expect(await response.text()).toBe('down')
    expect(a.hits('/500') - hits).toBe(1) // a 200..400 ms pause does not fit in 150 ms
    expect(await metric(registry, 'ballast_fetch_retries_total', { client: 'r' })).toBe(0)
    c[Symbol.dispose]()
  })

  it('a 404 is a successful call for the breaker; json() rejects it with FetchStatusError', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'lookup', baseUrl: a.url, registry, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 } })
    const response = await c.fetch('/missing')
    expect(response.status).toBe(404)
    expect(await response.json()).toEqual({ error: 'no such thing' })
    const error = await c.json('/missing').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchStatusError)
    expect((error as FetchStatusError).upstreamStatus).toBe(404)
    expect(c.breaker?.state).toBe('closed')
    expect(await metric(registry, 'ballast_breaker_calls_total', { outcome: 'success' })).toBe(2)
    expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'GET', status_class: '4xx' })).toBe(2)
    // No failure, so no fallback: cached data does not stand in for "not found".
    const fallback = vi.fn(() => Response.json({ cached: true }))
    expect(await c.json('/missing', { fallback }).catch((e: unknown) => e)).toBeInstanceOf(FetchStatusError)
    expect(fallback).not.toHaveBeenCalled()
    c[Symbol.dispose]()
  })

  it('a 504 under the caller deadline is the caller running out of time, not a dependency failure', async () => {
    const registry = new Registry()
    const breaker = { volumeThreshold: 1, errorThresholdPercentage: 1 }
    const c = createClient({ name: 'bounded', baseUrl: a.url, registry, timeout: 5_000, breaker })
    // The callee answers 504 because the budget we sent it ran out: the budget was the caller's.
    using deadline = Deadline.after(1_000)
    const response = await deadline.run(() => c.fetch('/504'))
    expect(response.status).toBe(504)
    await response.arrayBuffer()
    expect(c.breaker?.state).toBe('closed')
    expect(await metric(registry, 'ballast_breaker_calls_total', { breaker: 'bounded', outcome: 'ignored' })).toBe(1)
    expect(await metric(registry, 'ballast_breaker_calls_total', { breaker: 'bounded', outcome: 'failure' })).toBe(0)
    // Without a deadline that bounds the attempt, a 504 is the dependency's own failure.
    const unbounded = await c.fetch('/504')
    await unbounded.arrayBuffer()
    expect(c.breaker?.state).toBe('open')
    c[Symbol.dispose]()
  })

  it('a custom isFailure decides what the breaker counts', async () => {
    const c = createClient({
      name: 'lookup',
      baseUrl: a.url,
      registry: new Registry(),
      isFailure: (response) => response.status === 404,
      breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
    })
    const response = await c.fetch('/missing')
    expect(response.status).toBe(404)
    await response.arrayBuffer()
    expect(c.breaker?.state).toBe('open')
    c[Symbol.dispose]()
  })

  it('an isFailure that throws: the caller gets its error, the response is released, the breaker does not count it', async () => {
    const registry = new Registry()
    const bug = new Error('isFailure bug')
    const c = createClient({
      name: 'buggy',
      baseUrl: a.url,
      registry,
      timeout: 30_000,
      retry: { attempts: 2, delay: 1 },
      isFailure: () => {
        throw bug
      },
      breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
    })
    const before = timers()
    const hits = a.hits('/drip')
    const aborted = a.aborted('/drip')
    await expect(c.fetch('/drip')).rejects.toBe(bug)
    await expect(c.json('/drip')).rejects.toBe(bug)
    expect(a.hits('/drip') - hits).toBe(2) // not retried
    // The endless bodies were dropped: their connections closed and their 30 s budget timers gone
    // (polled: undici's own idle timer comes and goes within about a second).
    expect(await until(() => timers() <= before)).toBe(true)
    expect(await until(() => a.aborted('/drip') - aborted === 2)).toBe(true)
    expect(c.breaker?.state).toBe('closed')
    expect(await metric(registry, 'ballast_breaker_calls_total', { breaker: 'buggy', outcome: 'failure' })).toBe(0)
    expect(await metric(registry, 'ballast_breaker_calls_total', { breaker: 'buggy', outcome: 'ignored' })).toBe(2)
    expect(await metric(registry, 'ballast_fetch_requests_total', { client: 'buggy', method: 'GET', status_class: 'error' })).toBe(2)
    c[Symbol.dispose]()
  })

  it('retries only bodies that can be sent again: a stream, an async iterable or a Node Readable is sent once', async () => {
    const c = createClient({
      name: 'put',
      baseUrl: a.url,
      registry: new Registry(),
      retry: { attempts: 2, delay: 1 },
      breaker: { volumeThreshold: 1_000 },
    })
    const put = async (body: unknown): Promise<string[]> => {
      bodies.length = 0
      const response = await c.fetch('/put', { method: 'PUT', body: body as RequestInit['body'], duplex: 'half' } as RequestInit)
      expect(response.status).toBe(503)
      await response.body?.cancel()
      return [...bodies]
    }
    const bytes = () => new TextEncoder().encode('bytes')
    expect(await put('text')).toEqual(['text', 'text', 'text'])
    expect(await put(new URLSearchParams({ q: '1' }))).toEqual(['q=1', 'q=1', 'q=1'])
    expect(await put(new Blob(['blob']))).toEqual(['blob', 'blob', 'blob'])
    expect(await put(bytes())).toEqual(['bytes', 'bytes', 'bytes'])
    expect(await put(bytes().buffer)).toEqual(['bytes', 'bytes', 'bytes'])
    expect(await put(new DataView(bytes().buffer))).toEqual(['bytes', 'bytes', 'bytes'])
    const form = new FormData()
    form.set('field', 'value')
    expect((await put(form)).map((body) => body.includes('value'))).toEqual([true, true, true])
    expect(await put(undefined)).toEqual(['', '', ''])
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(bytes())
        controller.close()
      },
    })
    expect(await put(stream)).toEqual(['bytes'])
    async function* generate() {
      yield bytes()
    }
    expect(await put(generate())).toEqual(['bytes'])
    expect(await put(Readable.from(['node']))).toEqual(['node'])
    c[Symbol.dispose]()
  })

  it('fetch() with a fallback answers a failure with the fallback Response', async () => {
    const c = createClient({ name: 'f', baseUrl: a.url, registry: new Registry() })
    const response = await c.fetch('/500', { fallback: () => new Response('cached', { status: 200 }) })
    expect(response.status).toBe(200)
    expect(await response.text()).toBe('cached')
    c[Symbol.dispose]()
  })

  it('a throwing fallback: the caller gets its error, with the original failure as cause', async () => {
    const port = await closedPort()
    const c = createClient({ name: 'f', baseUrl: `http://127.0.0.1:${port}`, registry: new Registry() })
    const error = await c
      .json('/x', {
        fallback: () => {
          throw new Error('no cache either')
        },
      })
      .catch((e: unknown) => e)
    expect((error as Error).message).toBe('no cache either')
    expect((error as Error).cause).toBeInstanceOf(FetchNetworkError)
    c[Symbol.dispose]()
  })

  it('a fallback that fails the caller is counted error, not fallback, with what the call failed with as cause', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'f', baseUrl: a.url, registry, breaker: false })
    const throws = await c
      .json('/500', {
        fallback: () => {
          throw new Error('no cache either')
        },
      })
      .catch((e: unknown) => e)
    expect((throws as Error).cause).toBeInstanceOf(FetchStatusError)
    expect((throws as Error).cause).toMatchObject({ upstreamStatus: 500 })
    const notResponse = await c.json('/500', { fallback: () => ({ cached: 1 }) as unknown as Response }).catch((e: unknown) => e)
    expect(notResponse).toBeInstanceOf(TypeError)
    expect((notResponse as Error).message).toMatch(/"fallback" must return a Response, got/)
    const notJson = await c.json('/500', { fallback: () => new Response('<html>') }).catch((e: unknown) => e)
    expect(notJson).toBeInstanceOf(SyntaxError)
    expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'GET', status_class: 'error' })).toBe(3)
    expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'GET', status_class: 'fallback' })).toBe(0)
    expect(await c.json('/500', { fallback: () => Response.json({ cached: 1 }) })).toEqual({ cached: 1 })
    expect(await metric(registry, 'ballast_fetch_requests_total', { method: 'GET', status_class: 'fallback' })).toBe(1)
    c[Symbol.dispose]()
  })
})

describe('redirects', () => {
  it("each hop is sent the budget left at its own send, never the first hop's", async () => {
    const c = createClient({ name: 'redirects', baseUrl: a.url, registry: new Registry(), timeout: 5_000 })
    using deadline = Deadline.after(1_000)
    const response = await deadline.run(() => c.fetch('/slow-redirect'))
    const body = (await response.json()) as { budget: string }
    const [first] = a.budgets('/slow-redirect')
    // The first hop took 150 ms before it answered 302: the second is told that much less.
    expect(first).toBeLessThanOrEqual(1_000 - 10)
    expect(Number(body.budget)).toBeLessThanOrEqual((first as number) - 150)
    expect(Number(body.budget)).toBeGreaterThan(0)
    expect(response.redirected).toBe(true)
    expect(response.url).toBe(`${a.url}/echo`)
    c[Symbol.dispose]()
  })

  it('follows as fetch does: 303 and a POST after 302 turn into a GET without the body, 307 resends method and body', async () => {
    const c = createClient({ name: 'redirects', baseUrl: a.url, registry: new Registry() })
    const post = { method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json' } }
    expect(await c.json('/r303', post)).toEqual({ method: 'GET', body: '', type: null })
    expect(await c.json('/r302', post)).toEqual({ method: 'GET', body: '', type: null })
    expect(await c.json('/r307', post)).toEqual({ method: 'POST', body: '{"n":1}', type: 'application/json' })
    expect(await c.json('/r307', { method: 'PUT', body: 'x' })).toMatchObject({ method: 'PUT', body: 'x' })
    // A streamed body cannot be sent twice: the 307 fails as it does with fetch.
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('once'))
        controller.close()
      },
    })
    const error = await c.fetch('/r307', { method: 'POST', body: stream, duplex: 'half' } as RequestInit).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchNetworkError)
    c[Symbol.dispose]()
  })

  it('drops credentials on a redirect to another origin, keeps the other headers and the budget', async () => {
    const c = createClient({ name: 'redirects', registry: new Registry(), timeout: 2_000 })
    const body = await c.json<Record<string, string | null>>(`${a.url}/to-other-origin`, {
      headers: { authorization: 'Bearer secret', cookie: 'session=1', 'x-custom': 'kept' },
    })
    expect(body).toMatchObject({ authorization: null, cookie: null, custom: 'kept' })
    expect(Number(body.budget)).toBeGreaterThan(0)
    expect(Number(body.budget)).toBeLessThanOrEqual(2_000)
    c[Symbol.dispose]()
  })

  it('refuses the redirects fetch refuses: a location with a user or password, another origin for a same-origin request', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'refused', registry })
    for (const [path, init] of [
      ['/to-userinfo', {}],
      ['/to-other-origin', { mode: 'same-origin' }],
    ] as const) {
      expect(await fetch(`${a.url}${path}`, init).catch((e: unknown) => e)).toBeInstanceOf(TypeError)
      const refused = await c.fetch(`${a.url}${path}`, init).catch((e: unknown) => e)
      expect(refused).toBeInstanceOf(FetchNetworkError)
    }
    const origin = `http:${new URL(a.url).host}`
    expect(await metric(registry, 'ballast_breaker_calls_total', { breaker: `refused:${origin}`, outcome: 'failure' })).toBe(2)
    expect(await c.json(`${a.url}/r302`, { mode: 'same-origin' })).toMatchObject({ method: 'GET' })
    // Outside the default cors mode fetch follows such a location without the user and password.
    const platform = await fetch(`${a.url}/to-userinfo-same-origin`, { mode: 'same-origin' })
    expect(platform.status).toBe(200)
    await platform.body?.cancel()
    expect(await c.json(`${a.url}/to-userinfo-same-origin`, { mode: 'same-origin' })).toMatchObject({ method: 'GET' })
    c[Symbol.dispose]()
  })

  it('with integrity, leaves redirects to fetch, which checks the final response only', async () => {
    const body = JSON.stringify({ method: 'GET', body: '', type: null })
    const integrity = `sha256-${createHash('sha256').update(body).digest('base64')}`
    const c = createClient({ name: 'sri', baseUrl: a.url, registry: new Registry() })
    const response = await c.fetch('/r302', { integrity })
    expect([response.status, response.redirected, await response.text()]).toEqual([200, true, body])
    c[Symbol.dispose]()
  })

  it('gives up after 20 redirects like fetch (a network error), and leaves redirect: manual and propagate: false to fetch', async () => {
    const c = createClient({ name: 'redirects', baseUrl: a.url, registry: new Registry() })
    const hits = a.hits('/loop')
    expect(await c.fetch('/loop').catch((e: unknown) => e)).toBeInstanceOf(FetchNetworkError)
    expect(a.hits('/loop') - hits).toBe(21)
    const manual = await c.fetch('/r302', { redirect: 'manual' })
    expect([manual.status, manual.headers.get('location')]).toEqual([302, '/body'])
    await manual.body?.cancel()
    const plain = createClient({ name: 'plain', baseUrl: a.url, registry: new Registry(), propagate: false })
    const followed = await plain.fetch('/r303', { method: 'POST', body: 'x' })
    expect([followed.status, followed.redirected]).toEqual([200, true])
    await followed.body?.cancel()
    c[Symbol.dispose]()
    plain[Symbol.dispose]()
  })
})

describe('breakers per origin', () => {
  it('without baseUrl every origin has its own breaker, labelled client:scheme:host', async () => {
    const registry = new Registry()
    const c = createClient({ name: 'hosts', registry, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1 } })
    expect(c.breaker).toBeUndefined()
    const failed = await c.fetch(`${a.url}/500`)
    expect(failed.status).toBe(500)
    await failed.text()
    expect(c.breakerFor(a.url)?.state).toBe('open')
    expect(c.breakerFor(b.url)?.state).toBe('closed')
    expect(await c.json(`${b.url}/echo`)).toMatchObject({ method: 'GET' })
    await expect(c.fetch(`${a.url}/echo`)).rejects.toBeInstanceOf(BrokenCircuitError)
    const host = new URL(a.url).host
    expect(await registry.metrics()).toContain(`ballast_breaker_state{breaker="hosts:http:${host}",state="open"} 1`)
    await expect(c.fetch('/relative')).rejects.toThrow(/absolute URL/)
    const check = await promtool(await registry.metrics())
    expect(check.output).toBe('')
    expect(check.code).toBe(0)
    c[Symbol.dispose]()
  })

  it('keys breakers by origin: http and https of one host, or two ports, never share one', () => {
    const c = createClient({ name: 'wh', registry: new Registry() })
    const http = c.breakerFor('http://example.com/x')
    const https = c.breakerFor('https://example.com/y')
    expect(https).not.toBe(http)
    expect(http?.name).toBe('wh:http:example.com')
    expect(https?.name).toBe('wh:https:example.com')
    expect(c.breakerFor('HTTP://Example.com:80/z')).toBe(http)
    expect(c.breakerFor('https://example.com:8443/')?.name).toBe('wh:https:example.com:8443')
    expect(c.breakerFor(new URL('http://[::1]:9/'))?.name).toBe('wh:http:_::1_:9')
    const long = c.breakerFor(`https://${'a'.repeat(70)}.example:8080/`)?.name ?? ''
    expect(long.length).toBeLessThanOrEqual(64)
    expect(long).toMatch(/^wh:https:a+-[0-9a-z]+$/)
    expect(c.breakerFor(`http://${'a'.repeat(70)}.example:8080/`)?.name).not.toBe(long)
    expect(c.breakers?.size).toBe(6)
    c[Symbol.dispose]()
  })

  it('a breaker evicted while its call pauses before a retry: the retry goes out, under the new breaker of that origin', async () => {
    const c = createClient({ name: 'evict', registry: new Registry(), retry: { attempts: 1 }, breaker: { maxKeys: 1 } })
    const hits = a.hits('/busy-once')
    const call = c.json(`${a.url}/busy-once`)
    expect(await until(() => a.hits('/busy-once') > hits)).toBe(true)
    await sleep(50)
    const first = c.breakerFor(a.url)
    // Another origin while the call waits out its Retry-After: the idle key of a is evicted.
    expect(await c.json(`${b.url}/echo`)).toMatchObject({ method: 'GET' })
    expect(first?.state).toBe('disabled')
    expect(await call).toEqual({ ok: true })
    expect(a.hits('/busy-once') - hits).toBe(2)
    c[Symbol.dispose]()
  })

  it('a breaker disposed during its call: no pause before a retry that could not go out', async () => {
    const c = createClient({ name: 'disposed', baseUrl: a.url, registry: new Registry(), retry: { attempts: 1, delay: 4_000 } })
    const hits = a.hits('/slow')
    const call = c.fetch('/slow').catch((e: unknown) => e)
    expect(await until(() => a.hits('/slow') > hits)).toBe(true)
    c.breaker?.[Symbol.dispose]()
    // The backoff would be 2 to 4 s: settled long before, without a second request.
    const settled = await Promise.race([call, sleep(1_500).then(() => 'still pausing')])
    expect(settled).toMatchObject({ code: 'BALLAST_BREAKER_DISPOSED' })
    expect(a.hits('/slow') - hits).toBe(1)
    c[Symbol.dispose]()
  })

  it('with baseUrl, relative inputs are joined to its path and other origins are refused', async () => {
    const c = createClient({ name: 'one', baseUrl: `${a.url}/`, registry: new Registry() })
    expect(await c.json('echo')).toMatchObject({ method: 'GET' })
    await expect(c.fetch(`${b.url}/echo`)).rejects.toThrow(/baseUrl origin/)
    // An absolute input that does not parse is named as such, not as a missing baseUrl.
    await expect(c.fetch('http://exa mple/')).rejects.toThrow(
      `one.fetch: input must be a path or a valid URL on the baseUrl origin ${new URL(a.url).origin}, got 'http://exa mple/'`,
    )
    c[Symbol.dispose]()
  })
})

describe('dispose', () => {
  it('aborts the calls in flight: callers get BALLAST_FETCH_DISPOSED, the requests are torn down and timers freed at once', async () => {
    // An upstream of its own, so that its open connections are this test's alone.
    const hang = await upstream({
      '/hang': () => {
        // Never answers: only the client's abort ends it.
      },
      '/drip': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' })
        const timer = setInterval(() => res.write('chunk\n'), 40)
        res.on('close', () => clearInterval(timer))
      },
    })
    const before = timers()
    const clients = [
      createClient({ name: 'one', baseUrl: hang.url, registry: new Registry(), timeout: 30_000 }),
      createClient({ name: 'hosts', registry: new Registry(), timeout: 30_000 }),
      createClient({ name: 'bare', registry: new Registry(), timeout: 30_000, breaker: false }),
    ]
    const calls = clients.map((c) => c.fetch(`${hang.url}/hang`).catch((error: unknown) => error))
    // A response handed over with its body unread: the attempt lives until the body ends.
    const unread = await clients[0]?.fetch('/drip')
    try {
      expect(await until(() => hang.hits('/hang') === 3)).toBe(true)
      expect(timers()).toBeGreaterThan(before)
      for (const c of clients) c[Symbol.dispose]()
      for (const error of await Promise.all(calls)) {
        expect(error).toMatchObject({ code: 'BALLAST_FETCH_DISPOSED', status: 503 })
      }
      await expect(unread?.text()).rejects.toMatchObject({ code: 'BALLAST_FETCH_DISPOSED' })
      expect(await until(() => timers() <= before)).toBe(true)
      // Every request was torn down on the upstream's side (its socket closed before
      // the response ended). undici may open a fresh idle keep-alive connection right
      // after an abort (Node 22 keeps it until its keep-alive timeout): not ours to count.
      expect(await until(() => hang.aborted('/hang') === 3 && hang.aborted('/drip') === 1)).toBe(true)
    } finally {
      await hang.close()
    }
  })

  it('ends a call pausing before its retry at once (a Retry-After of 4 s here), with BALLAST_FETCH_DISPOSED', async () => {
    const c = createClient({ name: 'dispose-pause', baseUrl: a.url, registry: new Registry(), retry: { attempts: 1 } })
    const hits = a.hits('/busy')
    const before = timers()
    const call = c.fetch('/busy').catch((error: unknown) => error)
    expect(await until(() => a.hits('/busy') === hits + 1)).toBe(true)
    await sleep(50)
    const disposedAt = performance.now()
    c[Symbol.dispose]()
    expect(await call).toMatchObject({ code: 'BALLAST_FETCH_DISPOSED' })
    // Well under the 4 s pause, however loaded the machine.
    expect(performance.now() - disposedAt).toBeLessThan(2_000)
    expect(await until(() => timers() <= before)).toBe(true)
    expect(a.hits('/busy')).toBe(hits + 1)
  })

  it('refuses calls after dispose with BALLAST_FETCH_DISPOSED, with or without a breaker, and sends nothing', async () => {
    const clients = [
      createClient({ name: 'one', baseUrl: a.url, registry: new Registry() }),
      createClient({ name: 'hosts', registry: new Registry() }),
      createClient({ name: 'bare', registry: new Registry(), breaker: false }),
    ]
    const sent = a.hits('/echo')
    for (const c of clients) {
      c[Symbol.dispose]()
      await expect(c.fetch(`${a.url}/echo`)).rejects.toMatchObject({ code: 'BALLAST_FETCH_DISPOSED', status: 503 })
      await expect(c.json(`${a.url}/echo`)).rejects.toMatchObject({ code: 'BALLAST_FETCH_DISPOSED' })
    }
    expect(a.hits('/echo')).toBe(sent)
  })
})
