import { mock } from 'node:test'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Breaker, type BreakerOptions } from './breaker.js'
import { BreakerGroup } from './breaker-group.js'
import { BreakerTimeoutError } from './errors.js'

// What users testing their own code with fake timers meet: a breaker made once (at
// import, as a service module does) and reused by tests that install fake timers
// or not, and fake timers that leave `performance` alone (node:test cannot fake it).

const hang = (): Promise<never> => new Promise<never>(() => undefined)

function breaker(options: Partial<BreakerOptions> = {}): Breaker {
  return new Breaker({ name: 'fake-timers', registry: new Registry(), ...options })
}

/** The outcome of a call, read without awaiting it: `'pending'` until it settles. */
function track(call: Promise<unknown>): { readonly outcome: unknown } {
  const state = { outcome: 'pending' as unknown }
  call.then(
    (value) => {
      state.outcome = value
    },
    (error: unknown) => {
      state.outcome = error
    },
  )
  return state
}

afterEach(() => {
  vi.useRealTimers()
})

/** A few microtask turns: what a call needs to arm its attempt, or to settle once it timed out. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

describe('Breaker attempt timeouts when the clock changes', () => {
  it('a breaker used under real timers times attempts out on the fake clock a test installs later', async () => {
    const b = breaker({ timeout: 800 })
    try {
      // Leaves the breaker's timeout timer idle, kept for reuse, on the real clock.
      expect(await b.execute(async () => 1)).toBe(1)
      vi.useFakeTimers()
      const call = track(b.execute(hang))
      await vi.advanceTimersByTimeAsync(799)
      expect(call.outcome).toBe('pending')
      await vi.advanceTimersByTimeAsync(1)
      expect(call.outcome).toBeInstanceOf(BreakerTimeoutError)
    } finally {
      b[Symbol.dispose]()
    }
  })

  it('an attempt already running when fake timers are installed keeps its clock, and later ones are on the new one', async () => {
    const b = breaker({ timeout: 100 })
    try {
      const before = b.execute(hang).catch((error: unknown) => error)
      vi.useFakeTimers()
      const during = track(b.execute(hang))
      await vi.advanceTimersByTimeAsync(100)
      expect(during.outcome).toBeInstanceOf(BreakerTimeoutError)
      vi.useRealTimers()
      // Timed on the real clock all along: no test advances a clock for it.
      expect(await before).toBeInstanceOf(BreakerTimeoutError)
      // Back on the real clock after the fake one is gone.
      expect(await b.execute(hang).catch((error: unknown) => error)).toBeInstanceOf(BreakerTimeoutError)
    } finally {
      b[Symbol.dispose]()
    }
  })

  it('disposed after node:test reset its mock timers, leaves the timers the mock arms later alone', async () => {
    mock.timers.enable({ apis: ['setTimeout'] })
    const b = breaker({ timeout: 100 })
    try {
      expect(await b.execute(async () => 1)).toBe(1)
    } finally {
      mock.timers.reset()
    }
    b[Symbol.dispose]()
    mock.timers.enable({ apis: ['setTimeout'] })
    const next = breaker({ timeout: 100 })
    try {
      const call = track(next.execute(hang))
      mock.timers.tick(100)
      await new Promise((resolve) => setImmediate(resolve))
      expect(call.outcome).toBeInstanceOf(BreakerTimeoutError)
    } finally {
      next[Symbol.dispose]()
      mock.timers.reset()
    }
  })
})

describe('Breaker attempt timeouts with fake timers that leave performance real', () => {
  it('times attempts out once their budget has passed on the fake clock', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const b = breaker({ timeout: 800 })
    try {
      const first = track(b.execute(hang))
      // Started a moment of real time later, at the same fake instant.
      const second = track(b.execute(hang))
      await vi.advanceTimersByTimeAsync(799)
      expect(first.outcome).toBe('pending')
      await vi.advanceTimersByTimeAsync(1)
      expect(first.outcome).toBeInstanceOf(BreakerTimeoutError)
      // Due that moment of real time after the first, not a whole budget.
      await vi.advanceTimersByTimeAsync(50)
      expect(second.outcome).toBeInstanceOf(BreakerTimeoutError)
    } finally {
      b[Symbol.dispose]()
    }
  })
})

describe('Breaker attempt timeouts when real time passes the budget before the fake clock moves', () => {
  // The real clock says the timer is late, as on a busy loop: under fake timers that is the
  // test's own pace, and the attempt times out inside the advance, as the fake clock says.
  async function timesOutInside(advance: (ms: number) => void): Promise<void> {
    const b = breaker({ timeout: 5 })
    try {
      const call = track(b.execute(hang))
      await settle()
      const until = performance.now() + 20
      while (performance.now() < until) {}
      advance(5)
      await settle()
      expect(call.outcome).toBeInstanceOf(BreakerTimeoutError)
    } finally {
      b[Symbol.dispose]()
    }
  }

  it.each([
    ['setTimeout and setImmediate faked', ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate']],
    ['setTimeout faked', ['setTimeout', 'clearTimeout']],
  ] as const)('%s: inside advanceTimersByTime', async (_name, toFake) => {
    vi.useFakeTimers({ toFake: [...toFake] })
    await timesOutInside((ms) => vi.advanceTimersByTime(ms))
  })

  it('node:test mock timers (setTimeout and setImmediate): tick() returns, the attempt timed out', async () => {
    mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] })
    try {
      await timesOutInside((ms) => mock.timers.tick(ms))
    } finally {
      mock.timers.reset()
    }
  })
})

describe("Breaker's rolling window under fake timers", () => {
  const fail = (b: Breaker) => b.execute(() => Promise.reject(new Error('down'))).catch(() => undefined)

  it('runAllTimers() ends with a breaker that counted calls, and leaves its window empty', async () => {
    vi.useFakeTimers()
    const registry = new Registry()
    const b = breaker({ registry, volumeThreshold: 100 })
    try {
      expect(() => vi.runAllTimers()).not.toThrow()
      expect(await b.execute(async () => 1)).toBe(1)
      await fail(b)
      expect(await registry.getSingleMetric('ballast_breaker_failure_ratio')?.get()).toMatchObject({ values: [{ value: 0.5 }] })
      // Throws past 10,000 timers, as it did while opossum's window interval ticked for ever.
      await vi.runAllTimersAsync()
      expect(await registry.getSingleMetric('ballast_breaker_failure_ratio')?.get()).toMatchObject({ values: [{ value: 0 }] })
      expect(vi.getTimerCount()).toBe(0)
    } finally {
      b[Symbol.dispose]()
    }
  })

  it('a breaker used under real timers turns its window on the fake clock a test installs', async () => {
    const b = breaker({ volumeThreshold: 2, errorThresholdPercentage: 50, rollingCountTimeout: 1_000, rollingCountBuckets: 10 })
    try {
      expect(await b.execute(async () => 1)).toBe(1)
      vi.useFakeTimers()
      await fail(b)
      expect(b.state).toBe('closed') // 1 failure in 2 calls: not above 50 %
      vi.advanceTimersByTime(5_000)
      await fail(b)
      // Five windows later the first two calls are gone: one call, under volumeThreshold.
      expect(b.state).toBe('closed')
    } finally {
      b[Symbol.dispose]()
    }
  })
})

describe('BreakerGroup sweeps under fake timers', () => {
  // Fake timers that leave Date real: the sweep's clock moves one period per sweep.
  const fakeAllButDate = () => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })

  it('runAllTimers() ends with keys held, their idle keys evicted', async () => {
    fakeAllButDate()
    const group = new BreakerGroup({ name: 'hosts', registry: new Registry(), idleTimeout: 5_000 })
    try {
      expect(await group.get('a').execute(async () => 1)).toBe(1)
      group.get('b')
      expect(() => vi.runAllTimers()).not.toThrow()
      expect(group.size).toBe(0)
      expect(vi.getTimerCount()).toBe(0)
    } finally {
      group[Symbol.dispose]()
    }
  })

  it('a key used after the sweep ran ahead of Date is idle from that sweep on', async () => {
    fakeAllButDate()
    const group = new BreakerGroup({ name: 'hosts', registry: new Registry(), timeout: false })
    // A call that never settles keeps its key, and the sweep, going.
    const stuck = group
      .get('stuck')
      .execute(hang)
      .catch(() => undefined)
    try {
      vi.advanceTimersByTime(600_000)
      group.get('late')
      vi.advanceTimersByTime(120_000)
      expect(group.keys()).toEqual(['stuck', 'late'])
      vi.advanceTimersByTime(300_000)
      expect(group.keys()).toEqual(['stuck'])
    } finally {
      group[Symbol.dispose]()
      await stuck
    }
  })

  it('a group used under real timers sweeps on the fake clock a test installs', async () => {
    const group = new BreakerGroup({ name: 'hosts', registry: new Registry(), idleTimeout: 5_000 })
    try {
      group.get('a')
      vi.useFakeTimers()
      group.get('a')
      vi.advanceTimersByTime(10_000)
      expect(group.size).toBe(0)
    } finally {
      group[Symbol.dispose]()
    }
  })
})
