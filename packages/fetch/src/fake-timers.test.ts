import { Registry } from 'prom-client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createClient } from './client.js'
import { FetchTimeoutError } from './errors.js'

// A client as users test their own code with it: a stub fetch, fake timers.

/** Answers 200 with `{}`, or, for `/hang`, only when the call's signal aborts (with its reason). */
const stub: typeof fetch = (input, init) => {
  if (!String(input).endsWith('/hang')) return Promise.resolve(Response.json({}))
  return new Promise((_resolve, reject) => {
    const signal = init?.signal as AbortSignal
    signal.addEventListener('abort', () => reject(signal.reason))
  })
}

afterEach(() => {
  vi.useRealTimers()
})

describe('a client under fake timers', () => {
  it('runAllTimersAsync() ends with a client and its breaker alive', async () => {
    vi.useFakeTimers()
    const client = createClient({ name: 'inventory', baseUrl: 'http://inventory.test', fetch: stub, registry: new Registry() })
    try {
      expect(await client.json('/stock')).toEqual({})
      // Throws past 10,000 timers, as it did while opossum's window interval ticked for ever.
      await vi.runAllTimersAsync()
    } finally {
      client[Symbol.dispose]()
    }
  })

  it('runAllTimersAsync() ends with a client keeping a breaker per origin, Date left real', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
    const client = createClient({ name: 'hosts', fetch: stub, registry: new Registry() })
    try {
      expect(await client.json('http://a.test/stock')).toEqual({})
      await vi.runAllTimersAsync()
      expect(client.breakers?.size).toBe(0)
    } finally {
      client[Symbol.dispose]()
    }
  })

  it('with performance left real and setImmediate faked, real time past the budget before the advance: timed out inside it', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate'] })
    const client = createClient({
      name: 'late',
      baseUrl: 'http://late.test',
      timeout: 5,
      breaker: false,
      fetch: stub,
      registry: new Registry(),
    })
    try {
      const outcomes: unknown[] = []
      client.fetch('/hang').catch((error: unknown) => outcomes.push(error))
      await Promise.resolve()
      const until = performance.now() + 20
      while (performance.now() < until) {}
      await vi.advanceTimersByTimeAsync(6)
      expect(outcomes).toEqual([expect.any(FetchTimeoutError)])
    } finally {
      client[Symbol.dispose]()
    }
  })

  it('with performance left real, calls started at one fake instant time out together', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const client = createClient({
      name: 'slow',
      baseUrl: 'http://slow.test',
      timeout: 800,
      breaker: false,
      fetch: stub,
      registry: new Registry(),
    })
    try {
      const outcomes: unknown[] = []
      for (const path of ['/hang', '/hang']) client.fetch(path).catch((error: unknown) => outcomes.push(error))
      await vi.advanceTimersByTimeAsync(850)
      expect(outcomes).toEqual([expect.any(FetchTimeoutError), expect.any(FetchTimeoutError)])
    } finally {
      client[Symbol.dispose]()
    }
  })
})
