import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { BrokenCircuitError } from '@ballast/breaker'
import { Deadline, DeadlineExceededError } from '@ballast/deadline'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { selfSigned } from '../../drain/test/support/certificate.js'
import { FetchInvalidJsonError, FetchNetworkError, FetchStatusError, FetchTimeoutError } from './errors.js'
import { type ClientOptions, createClient } from './index.js'
import { abortReasonSpy, activeResources, backToBaseline, closedPort, snapshot, type Upstream, upstream } from './test-support.js'

// The fault matrix: one real upstream on 127.0.0.1 per fault, one fresh client
// (and registry) per test. Each test states what the caller sees, how many
// attempts reached the server, the breaker's state and the metric deltas.

let server: Upstream
let baseline: string[]
const timers: NodeJS.Timeout[] = []

beforeAll(async () => {
  baseline = activeResources()
  server = await upstream({
    '/500': (_req, res) => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}'),
    '/429': (_req, res, hit) => {
      if (hit === 1) res.writeHead(429, { 'retry-after': '1' }).end('slow down')
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    },
    '/429-always': (_req, res) => res.writeHead(429, { 'retry-after': '1' }).end('slow down'),
    '/503': (_req, res, hit) => {
      if (hit === 1) res.writeHead(503, { 'retry-after': '1' }).end('unavailable')
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    },
    '/503-always': (_req, res) => res.writeHead(503, { 'retry-after': '1' }).end('unavailable'),
    '/hang': () => {
      // Never answers: the request stays open until the client gives up.
    },
    '/slow-body': (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"items":[')
      // The rest would come after 5 s: far past every budget below.
      timers.push(setTimeout(() => res.end('1]}'), 5_000).unref())
    },
    '/reset': (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' })
      res.write('{"items":[1,2,3')
      setTimeout(() => res.socket?.destroy(), 20)
    },
    '/busy-caller': (_req, res) => {
      // This upstream shares the caller's process: it answers, then holds the loop past the
      // attempt budget, as a busy request handler of an overloaded caller would.
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
      const until = performance.now() + 200
      while (performance.now() < until) {}
    },
    '/bad-json': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"items": [1, 2,'),
    '/ok': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
    '/loop': (_req, res) => res.writeHead(302, { location: '/loop' }).end(),
    '/bad-location': (_req, res) => res.writeHead(302, { location: 'http://[bad' }).end(),
  })
})

afterAll(async () => {
  for (const timer of timers) clearTimeout(timer)
  await server.close()
  expect(await backToBaseline(baseline)).toEqual([])
})

function client(overrides: Partial<ClientOptions> = {}) {
  const registry = new Registry()
  const instance = createClient({
    name: 'upstream',
    baseUrl: server.url,
    timeout: 200,
    retry: { attempts: 2, delay: 10 },
    breaker: { volumeThreshold: 10, errorThresholdPercentage: 50, resetTimeout: 10_000 },
    registry,
    ...overrides,
  })
  return { client: instance, registry }
}

function series(registry: Registry) {
  return snapshot(registry, {
    get2xx: ['ballast_fetch_requests_total', { client: 'upstream', method: 'GET', status_class: '2xx' }],
    get4xx: ['ballast_fetch_requests_total', { client: 'upstream', method: 'GET', status_class: '4xx' }],
    get5xx: ['ballast_fetch_requests_total', { client: 'upstream', method: 'GET', status_class: '5xx' }],
    error: ['ballast_fetch_requests_total', { client: 'upstream', method: 'GET', status_class: 'error' }],
    fallback: ['ballast_fetch_requests_total', { client: 'upstream', method: 'GET', status_class: 'fallback' }],
    retries: ['ballast_fetch_retries_total', { client: 'upstream' }],
    failFast: ['ballast_fetch_fail_fast_total', { client: 'upstream' }],
    success: ['ballast_breaker_calls_total', { breaker: 'upstream', outcome: 'success' }],
    failure: ['ballast_breaker_calls_total', { breaker: 'upstream', outcome: 'failure' }],
    ignored: ['ballast_breaker_calls_total', { breaker: 'upstream', outcome: 'ignored' }],
    rejected: ['ballast_breaker_calls_total', { breaker: 'upstream', outcome: 'rejected' }],
  })
}

async function deltas(registry: Registry, before: Record<string, number>): Promise<Record<string, number>> {
  const after = await series(registry)
  const out: Record<string, number> = {}
  for (const [key, value] of Object.entries(after)) {
    const delta = value - (before[key] ?? 0)
    if (delta !== 0) out[key] = delta
  }
  return out
}

describe('fault matrix', () => {
  it('upstream 500s: the caller gets the 500 after 2 retries; each attempt is a breaker failure', async () => {
    const { client: c, registry } = client()
    const before = await series(registry)
    const response = await c.fetch('/500')
    expect(response.status).toBe(500)
    expect(await response.json()).toEqual({ error: 'boom' })
    expect(server.hits('/500')).toBe(3)
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ get5xx: 1, retries: 2, failure: 3 })
    c[Symbol.dispose]()
  })

  it('upstream 500s: retries stop once the breaker opens, then calls are refused without a socket', async () => {
    const { client: c, registry } = client({ breaker: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeout: 10_000 } })
    const hitsBefore = server.hits('/500')
    const before = await series(registry)
    const error = await c.json('/500').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchStatusError)
    expect((error as FetchStatusError).upstreamStatus).toBe(500)
    expect(server.hits('/500') - hitsBefore).toBe(2) // the third attempt never ran: the breaker had opened
    expect(c.breaker?.state).toBe('open')
    const refused = await c.json('/500').catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(BrokenCircuitError)
    expect((refused as BrokenCircuitError).status).toBe(503)
    expect(server.hits('/500') - hitsBefore).toBe(2)
    // With a fallback the caller gets the cached JSON instead.
    expect(await c.json('/500', { fallback: () => Response.json({ cached: true }) })).toEqual({ cached: true })
    expect(await deltas(registry, before)).toEqual({ get5xx: 1, error: 1, fallback: 1, retries: 1, failure: 2, rejected: 2 })
    c[Symbol.dispose]()
  })

  const retryAfterCases = [
    { status: 429, ready: '/429', always: '/429-always', text: 'slow down', statusClass: 'get4xx' },
    { status: 503, ready: '/503', always: '/503-always', text: 'unavailable', statusClass: 'get5xx' },
  ] as const

  it.each(retryAfterCases)('$status with Retry-After: honoured when it fits the deadline, then the retry succeeds', async (row) => {
    const { client: c, registry } = client()
    const before = await series(registry)
    const started = performance.now()
    const body = await Deadline.after(3_000).run(() => c.json(row.ready))
    const elapsed = performance.now() - started
    expect(body).toEqual({ ok: true })
    expect(server.hits(row.ready)).toBe(2)
    expect(elapsed).toBeGreaterThanOrEqual(950) // waited the 1 s the server asked for, not the 10 ms backoff
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ get2xx: 1, retries: 1, failure: 1, success: 1 })
    c[Symbol.dispose]()
  })

  it.each(retryAfterCases)('$status with Retry-After beyond the deadline: answered at once, no retry', async (row) => {
    const { client: c, registry } = client()
    const before = await series(registry)
    const started = performance.now()
    using deadline = Deadline.after(500)
    const response = await deadline.run(() => c.fetch(row.always))
    expect(performance.now() - started).toBeLessThan(450)
    expect(response.status).toBe(row.status)
    expect(response.headers.get('retry-after')).toBe('1')
    expect(await response.text()).toBe(row.text)
    expect(server.hits(row.always)).toBe(1) // the 10 ms backoff would fit: the Retry-After is what stopped it
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ [row.statusClass]: 1, failure: 1 })
    c[Symbol.dispose]()
  })

  it('hang before headers: each attempt times out at its budget, the upstream sees its sockets close', async () => {
    const { client: c, registry } = client({ timeout: 150, retry: { attempts: 1, delay: 10 } })
    const before = await series(registry)
    const started = performance.now()
    const error = await c.fetch('/hang').catch((e: unknown) => e)
    const elapsed = performance.now() - started
    expect(error).toBeInstanceOf(FetchTimeoutError)
    expect((error as FetchTimeoutError).status).toBe(504)
    expect(elapsed).toBeGreaterThanOrEqual(290)
    expect(elapsed).toBeLessThan(2 * 150 + 10 + 500) // two budgets and the pause, plus room for a loaded machine
    expect(server.hits('/hang')).toBe(2)
    await expect.poll(() => server.aborted('/hang')).toBe(2)
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ error: 1, retries: 1, failure: 2 })
    c[Symbol.dispose]()
  })

  it('hang before headers under a shorter caller deadline: DeadlineExceededError, not a dependency failure', async () => {
    const hitsBefore = server.hits('/hang')
    const { client: c, registry } = client({ timeout: 5_000 })
    const before = await series(registry)
    using deadline = Deadline.after(120)
    const error = await deadline.run(() => c.fetch('/hang')).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DeadlineExceededError)
    expect(server.hits('/hang') - hitsBefore).toBe(1) // no retry past the caller's deadline
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ error: 1, ignored: 1 })
    c[Symbol.dispose]()
  })

  it("hang before headers, a retry cut by the caller's deadline: all attempts inside the one deadline", async () => {
    /** Why each attempt's signal (the one handed to fetch) aborted. */
    const { fetch: spy, reasons } = abortReasonSpy()
    const hitsBefore = server.hits('/hang')
    const { client: c, registry } = client({ timeout: 150, fetch: spy }) // 2 retries, 10 ms backoff
    const before = await series(registry)
    using deadline = Deadline.after(250)
    const started = performance.now()
    const error = await deadline.run(() => c.fetch('/hang')).catch((e: unknown) => e)
    const elapsed = performance.now() - started
    // The first attempt ran its whole 150 ms; the retry got what the deadline had left minus the
    // margin, and its own timer ended it on that budget before the deadline expired (the client's
    // DeadlineExceededError, not the deadline's own): no third attempt.
    expect(server.hits('/hang') - hitsBefore).toBe(2)
    expect(reasons).toHaveLength(2)
    expect(reasons[0]).toBeInstanceOf(FetchTimeoutError)
    expect(reasons[1]).toBeInstanceOf(DeadlineExceededError)
    expect((reasons[1] as Error).message).toBe('deadline exceeded: no budget left to wait for "upstream"')
    expect(reasons[1]).not.toBe(deadline.signal.reason)
    // The caller hears of its deadline, not of a dependency timeout, inside it (plus room for a loaded machine).
    expect(error).toBeInstanceOf(DeadlineExceededError)
    expect(elapsed).toBeLessThan(250 + 150)
    expect(c.breaker?.state).toBe('closed')
    // The first attempt's own timeout is a failure; the retry, cut by the caller's deadline, is not.
    expect(await deltas(registry, before)).toEqual({ error: 1, retries: 1, failure: 1, ignored: 1 })
    c[Symbol.dispose]()
  })

  it('slow body, fetch(): headers arrive, the body read is cut at the same attempt budget', async () => {
    const { client: c, registry } = client({
      timeout: 200,
      breaker: { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeout: 10_000 },
    })
    const before = await series(registry)
    const started = performance.now()
    const response = await c.fetch('/slow-body')
    expect(response.status).toBe(200)
    expect(performance.now() - started).toBeLessThan(200)
    const error = await response.text().catch((e: unknown) => e)
    const elapsed = performance.now() - started
    expect(error).toBeInstanceOf(FetchTimeoutError)
    expect(elapsed).toBeGreaterThanOrEqual(190)
    expect(elapsed).toBeLessThan(200 + 500) // the budget, plus room for a loaded machine
    expect(server.hits('/slow-body')).toBe(1)
    await expect.poll(() => server.aborted('/slow-body')).toBe(1)
    // The breaker's verdict was given at the headers; the response was handed over, so no retry,
    // and the body's timeout is not counted: a breaker that one failure would open stays closed.
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ get2xx: 1, success: 1 })
    c[Symbol.dispose]()
  })

  it('slow body, json(): the body read is inside the attempt, so it times out, counts and is retried', async () => {
    const hitsBefore = server.hits('/slow-body')
    const { client: c, registry } = client({ timeout: 200, retry: { attempts: 1, delay: 10 } })
    const before = await series(registry)
    const error = await c.json('/slow-body').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchTimeoutError)
    expect(server.hits('/slow-body') - hitsBefore).toBe(2)
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ error: 1, retries: 1, failure: 2 })
    c[Symbol.dispose]()
  })

  it('connection refused: FetchNetworkError (ECONNREFUSED) after every attempt failed', async () => {
    const port = await closedPort()
    const { client: c, registry } = client({ baseUrl: `http://127.0.0.1:${port}` })
    const before = await series(registry)
    const error = await c.json('/anything').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchNetworkError)
    expect((error as FetchNetworkError).status).toBe(502)
    expect((error as Error).message).toContain('ECONNREFUSED')
    expect(c.breaker?.state).toBe('closed')
    // Nothing listens, so attempts are counted by the breaker: three failures.
    expect(await deltas(registry, before)).toEqual({ error: 1, retries: 2, failure: 3 })
    c[Symbol.dispose]()
  })

  it('reset mid-body: fetch() hands over the 200, the body read fails with FetchNetworkError', async () => {
    const { client: c, registry } = client({ breaker: { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeout: 10_000 } })
    const before = await series(registry)
    const response = await c.fetch('/reset')
    expect(response.status).toBe(200)
    const error = await response.text().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchNetworkError)
    expect(server.hits('/reset')).toBe(1)
    // Judged at the headers, as for the slow body: the reset is not counted, the breaker stays closed.
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ get2xx: 1, success: 1 })
    c[Symbol.dispose]()
  })

  it('reset mid-body: json() retries the GET and fails after the last attempt', async () => {
    const hitsBefore = server.hits('/reset')
    const { client: c, registry } = client({ breaker: { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeout: 10_000 } })
    const before = await series(registry)
    const error = await c.json('/reset').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchNetworkError)
    expect(server.hits('/reset') - hitsBefore).toBe(3)
    expect(c.breaker?.state).toBe('open') // three failures out of three calls in the window
    expect(await deltas(registry, before)).toEqual({ error: 1, retries: 2, failure: 3 })
    c[Symbol.dispose]()
  })

  it("the caller's own loop busy past the budget while the answer waits in the socket: read, not a timeout", async () => {
    const { client: c, registry } = client({ timeout: 50 })
    const before = await series(registry)
    expect(await c.json('/busy-caller')).toEqual({ ok: true })
    expect(server.hits('/busy-caller')).toBe(1)
    expect(await deltas(registry, before)).toEqual({ get2xx: 1, success: 1 })
    c[Symbol.dispose]()
  })

  it('invalid JSON: FetchInvalidJsonError, one attempt (garbage is not retried), one breaker failure', async () => {
    const { client: c, registry } = client()
    const before = await series(registry)
    const error = await c.json('/bad-json').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchInvalidJsonError)
    expect((error as FetchInvalidJsonError).cause).toBeInstanceOf(SyntaxError)
    expect(server.hits('/bad-json')).toBe(1)
    expect(c.breaker?.state).toBe('closed')
    expect(await deltas(registry, before)).toEqual({ error: 1, failure: 1 })
    // The same answer through fetch() is a 200 the caller may parse as it likes.
    const response = await c.fetch('/bad-json')
    expect(response.status).toBe(200)
    expect(await response.text()).toBe('{"items": [1, 2,')
    c[Symbol.dispose]()
  })

  it("a request undici will not send as given is the caller's mistake: fetch's TypeError, one attempt, not a dependency failure, no fallback", async () => {
    const { client: c, registry } = client({ breaker: { volumeThreshold: 3, errorThresholdPercentage: 1, resetTimeout: 10_000 } })
    const hitsBefore = server.hits('/ok')
    const before = await series(registry)
    const mistakes: RequestInit[] = [
      { headers: { expect: '100-continue' } },
      { headers: { 'transfer-encoding': 'chunked' } },
      { headers: { upgrade: 'websocket' } },
      { method: 'POST', headers: { 'content-length': '10' }, body: 'abc' },
      { referrer: 'http://[bad' },
    ]
    for (const init of mistakes) {
      const error = await c.json('/ok', { ...init, fallback: () => Response.json({ cached: true }) }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(TypeError)
      expect(error).not.toBeInstanceOf(FetchNetworkError)
    }
    // Before: each was a FetchNetworkError, retried twice, and the third opened the breaker.
    expect(c.breaker?.state).toBe('closed')
    expect(await c.json('/ok')).toEqual({ ok: true })
    // No retry, no failure, no fallback; the POST is counted under its own method.
    expect(await deltas(registry, before)).toEqual({ error: 4, get2xx: 1, ignored: 5, success: 1 })
    expect(server.hits('/ok') - hitsBefore).toBeLessThanOrEqual(2) // the POST's head may have gone out
    c[Symbol.dispose]()
  })

  it('a certificate the client does not trust: FetchNetworkError naming the check that failed, one attempt (another would meet the same certificate), one breaker failure', async () => {
    const tls = https.createServer(await selfSigned(), (_req, res) => res.end('{}'))
    let connections = 0
    tls.on('connection', () => connections++)
    tls.on('tlsClientError', () => {})
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve))
    const { client: c, registry } = client({ baseUrl: `https://127.0.0.1:${(tls.address() as AddressInfo).port}` })
    try {
      const before = await series(registry)
      const error = await c.json('/x').catch((e: unknown) => e)
      expect(error).toBeInstanceOf(FetchNetworkError)
      expect((error as Error).message).toContain('DEPTH_ZERO_SELF_SIGNED_CERT')
      expect(connections).toBe(1)
      expect(await deltas(registry, before)).toEqual({ error: 1, failure: 1 })
    } finally {
      c[Symbol.dispose]()
      await new Promise((resolve) => tls.close(resolve))
    }
  })

  it("a redirect to a Location that does not parse is the dependency's failure, whoever follows it", async () => {
    for (const overrides of [{}, { propagate: false as const }]) {
      const { client: c, registry } = client(overrides)
      const hitsBefore = server.hits('/bad-location')
      const before = await series(registry)
      expect(await c.json('/bad-location').catch((e: unknown) => e)).toBeInstanceOf(FetchNetworkError)
      expect(await c.json('/bad-location', { fallback: () => Response.json({ cached: true }) })).toEqual({ cached: true })
      expect(server.hits('/bad-location') - hitsBefore).toBe(6)
      expect(await deltas(registry, before)).toEqual({ error: 1, fallback: 1, retries: 4, failure: 6 })
      c[Symbol.dispose]()
    }
  })

  it("an injected fetch's own error with a certificate code (node-fetch's FetchError) is not retried either", async () => {
    let calls = 0
    const certificate = Object.assign(new Error('self-signed certificate'), { name: 'FetchError', code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })
    const { client: c, registry } = client({
      fetch: async () => {
        calls++
        throw certificate
      },
    })
    const before = await series(registry)
    expect(await c.json('/x').catch((e: unknown) => e)).toBe(certificate)
    expect(calls).toBe(1)
    expect(await deltas(registry, before)).toEqual({ error: 1, failure: 1 })
    c[Symbol.dispose]()
  })

  it("a proxy's refusal (a 407 through undici's ProxyAgent, which comes as UND_ERR_INVALID_ARG) is the dependency's failure", async () => {
    let calls = 0
    const refusal = Object.assign(new Error('Proxy Authentication Required (407)'), { code: 'UND_ERR_INVALID_ARG' })
    const { client: c, registry } = client({
      fetch: async () => {
        calls++
        throw new TypeError('fetch failed', { cause: refusal })
      },
    })
    const before = await series(registry)
    expect(await c.json('/x').catch((e: unknown) => e)).toBeInstanceOf(FetchNetworkError)
    expect(calls).toBe(3)
    expect(await deltas(registry, before)).toEqual({ error: 1, retries: 2, failure: 3 })
    c[Symbol.dispose]()
  })

  it("a proxy-authorization header given per request, which undici refuses, stays the caller's mistake", async () => {
    let calls = 0
    const refusal = Object.assign(new Error('Proxy-Authorization should be sent in ProxyAgent constructor'), {
      code: 'UND_ERR_INVALID_ARG',
    })
    const { client: c, registry } = client({
      fetch: async () => {
        calls++
        throw new TypeError('fetch failed', { cause: refusal })
      },
    })
    const before = await series(registry)
    expect(await c.json('/x', { fallback: () => Response.json({ cached: true }) }).catch((e: unknown) => e)).toBeInstanceOf(TypeError)
    expect(calls).toBe(1)
    expect(await deltas(registry, before)).toEqual({ error: 1, ignored: 1 })
    c[Symbol.dispose]()
  })

  it('a redirect loop: FetchNetworkError after 20 redirects, as fetch gives, and not retried (another try would loop again)', async () => {
    const { client: c, registry } = client()
    const hitsBefore = server.hits('/loop')
    const before = await series(registry)
    const error = await c.json('/loop').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchNetworkError)
    expect((error as Error).message).toContain('redirect count exceeded')
    expect(server.hits('/loop') - hitsBefore).toBe(21)
    expect(await deltas(registry, before)).toEqual({ error: 1, failure: 1 })
    c[Symbol.dispose]()
  })
})
