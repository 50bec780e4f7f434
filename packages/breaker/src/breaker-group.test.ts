import { Gauge, Registry } from 'prom-client'
import { describe, expect, it, vi } from 'vitest'
import { Breaker } from './breaker.js'
import { BreakerGroup } from './breaker-group.js'

describe('BreakerGroup', () => {
  it('keeps one breaker per key, isolated from the others', async () => {
    const registry = new Registry()
    const group = new BreakerGroup({ name: 'hosts', registry, volumeThreshold: 1, errorThresholdPercentage: 0 })
    const a = group.get('a.example:443')
    expect(group.get('a.example:443')).toBe(a)
    await a.execute(() => Promise.reject(new Error('down'))).catch(() => undefined)
    expect(a.state).toBe('open')
    expect(group.get('b.example:443').state).toBe('closed')
    expect(await registry.metrics()).toContain('ballast_breaker_state{breaker="hosts:a.example:443",state="open"} 1')
    group[Symbol.dispose]()
    expect(a.state).toBe('disabled')
  })

  it('bounds keys with an LRU, evicting the least recently used key with its series', async () => {
    const registry = new Registry()
    const group = new BreakerGroup({ name: 'hosts', registry, maxKeys: 2 })
    const one = group.get('one')
    group.get('two')
    group.get('one')
    group.get('three')
    expect(group.keys()).toEqual(['one', 'three'])
    expect(one.state).toBe('closed')
    const text = await registry.metrics()
    expect(text).not.toContain('breaker="hosts:two"')
    expect(text).toContain('breaker="hosts:three"')
    group[Symbol.dispose]()
    expect(await registry.metrics()).not.toMatch(/breaker="hosts/)
  })

  it('lets the calls of a key evicted while busy finish, then disposes it with its series', async () => {
    const registry = new Registry()
    const group = new BreakerGroup({ name: 'hosts', registry, maxKeys: 1 })
    let release: (value: string) => void = () => undefined
    const slow = group.get('slow')
    const pending = slow.execute(() => new Promise<string>((resolve) => (release = resolve)))
    group.get('other')
    expect(group.keys()).toEqual(['other'])
    expect(slow.state).toBe('closed')
    release('answer')
    await expect(pending).resolves.toBe('answer')
    expect(await registry.metrics()).toContain('ballast_breaker_calls_total{breaker="hosts:slow",outcome="success"} 1')
    // Idle now: the next use of the group disposes it and its series.
    group.get('other')
    expect(slow.state).toBe('disabled')
    expect(await registry.metrics()).not.toContain('breaker="hosts:slow"')
    group[Symbol.dispose]()
  })

  it('counts a call pausing between retries as busy: eviction does not cut its retry short', async () => {
    const registry = new Registry()
    const group = new BreakerGroup({ name: 'hosts', registry, maxKeys: 1, retry: { attempts: 1, delay: 20 } })
    let tries = 0
    const pending = group.get('flaky').execute(async () => {
      tries++
      if (tries === 1) throw new Error('first try fails')
      return 'second try'
    })
    // Let the first attempt fail: the call now waits out its retry delay with no attempt running.
    await new Promise((resolve) => setImmediate(resolve))
    expect(group.get('flaky').running).toBe(0)
    group.get('other')
    await expect(pending).resolves.toBe('second try')
    expect(tries).toBe(2)
    group[Symbol.dispose]()
  })

  it('counts a call whose fallback is still running as busy: eviction waits for the fallback', async () => {
    const registry = new Registry()
    const group = new BreakerGroup({ name: 'hosts', registry, maxKeys: 1 })
    let release: (value: string) => void = () => undefined
    let fallbackStarted = false
    const down = group.get('down')
    const pending = down.execute(() => Promise.reject(new Error('upstream down')), {
      fallback: () => {
        fallbackStarted = true
        return new Promise<string>((resolve) => (release = resolve))
      },
    })
    await vi.waitFor(() => expect(fallbackStarted).toBe(true))
    group.get('other')
    expect(down.state).toBe('closed')
    release('cached')
    await expect(pending).resolves.toBe('cached')
    group.get('other')
    expect(down.state).toBe('disabled')
    group[Symbol.dispose]()
  })

  it('takes back a key evicted while busy when it is used again, state and calls intact', async () => {
    const registry = new Registry()
    const group = new BreakerGroup({ name: 'hosts', registry, maxKeys: 1 })
    let release: (value: number) => void = () => undefined
    const a = group.get('a')
    const pending = a.execute(() => new Promise<number>((resolve) => (release = resolve)))
    const b = group.get('b')
    expect(group.get('a')).toBe(a)
    expect(group.keys()).toEqual(['a'])
    expect(b.state).toBe('disabled')
    release(7)
    await expect(pending).resolves.toBe(7)
    expect(a.state).toBe('closed')
    group[Symbol.dispose]()
    expect(a.state).toBe('disabled')
  })

  it('disposes a key evicted while busy at once on delete(), and its calls in flight fail', async () => {
    const registry = new Registry()
    const group = new BreakerGroup({ name: 'hosts', registry, maxKeys: 1 })
    const pending = group.get('a').execute(() => new Promise<number>(() => undefined))
    group.get('b')
    expect(group.delete('a')).toBe(true)
    await expect(pending).rejects.toMatchObject({ code: 'BALLAST_BREAKER_DISPOSED' })
    expect(await registry.metrics()).not.toContain('breaker="hosts:a"')
    expect(group.delete('a')).toBe(false)
    group[Symbol.dispose]()
  })

  it('its sweep disposes a key evicted while busy once idle, then stops when nothing is left', async () => {
    vi.useFakeTimers()
    try {
      const registry = new Registry()
      const group = new BreakerGroup({ name: 'hosts', registry, maxKeys: 1, idleTimeout: 5_000 })
      let release: (value: number) => void = () => undefined
      const pending = group.get('a').execute(() => new Promise<number>((resolve) => (release = resolve)))
      group.get('b')
      release(1)
      await pending
      expect(await registry.metrics()).toContain('breaker="hosts:a"')
      // One sweep period (here the idle timeout): 'a' goes as soon as it is idle, 'b' as idle for long enough.
      vi.advanceTimersByTime(5_000)
      expect(await registry.metrics()).not.toMatch(/breaker="hosts:/)
      expect(group.size).toBe(0)
      expect(vi.getTimerCount()).toBe(0)
    } finally {
      vi.useRealTimers()
    }
  })

  it('evicts idle keys and stops its sweep timer when empty', async () => {
    vi.useFakeTimers()
    try {
      const registry = new Registry()
      const group = new BreakerGroup({ name: 'hosts', registry, idleTimeout: 5_000 })
      group.get('idle')
      vi.advanceTimersByTime(3_000)
      group.get('busy')
      vi.advanceTimersByTime(3_000)
      expect(group.keys()).toEqual(['busy'])
      vi.advanceTimersByTime(5_000)
      expect(group.size).toBe(0)
      expect(vi.getTimerCount()).toBe(0)
      expect(await registry.metrics()).not.toMatch(/breaker="hosts:/)
    } finally {
      vi.useRealTimers()
    }
  })

  it('creating a group leaves the series and counts of a breaker with the same name alone', async () => {
    const registry = new Registry()
    const existing = new Breaker({ name: 'inventory', registry })
    await existing.execute(async () => 1)
    const group = new BreakerGroup({ name: 'inventory', registry })
    await existing.execute(async () => 2)
    await existing.execute(async () => 3)
    const text = await registry.metrics()
    expect(text).toContain('ballast_breaker_calls_total{breaker="inventory",outcome="success"} 3')
    expect(text).toContain('ballast_breaker_failure_threshold_ratio{breaker="inventory"} 0.5')
    expect(text).toContain('ballast_breaker_state{breaker="inventory",state="closed"} 1')
    group[Symbol.dispose]()
    existing[Symbol.dispose]()
  })

  it('checks its registry at construction: a metric name taken by an incompatible metric throws', () => {
    const registry = new Registry()
    new Gauge({ name: 'ballast_breaker_calls_total', help: 'taken', registers: [registry] })
    expect(() => new BreakerGroup({ name: 'g', registry })).toThrow(/ballast_breaker_calls_total/)
    expect(() => new BreakerGroup({ name: 'g', registry: {} as never })).toThrow(/"registry"/)
  })

  it('validates options and keys', () => {
    expect(() => new BreakerGroup({ name: 'g', maxKeys: 0 })).toThrow(/maxKeys.*0/)
    expect(() => new BreakerGroup({ name: 'g', timeout: -3 })).toThrow(/timeout.*-3/)
    const group = new BreakerGroup({ name: 'g', registry: new Registry() })
    expect(() => group.get('has space')).toThrow(RangeError)
    expect(() => group.get('has space')).toThrow(/got 'has space'/)
    for (const [key, shown] of [
      [Number.NaN, 'NaN'],
      [Symbol('s'), 'Symbol(s)'],
      [1n, '1n'],
    ] as const) {
      expect(() => group.get(key as never)).toThrow(new TypeError(`BreakerGroup: key must be a string, got ${shown}`))
    }
    group[Symbol.dispose]()
    expect(() => group.get('after')).toThrow(expect.objectContaining({ code: 'BALLAST_BREAKER_DISPOSED', status: 503 }))
  })
})
