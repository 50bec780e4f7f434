import { Registry } from 'prom-client'
import { describe, expect, it, vi } from 'vitest'
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

  it('validates options and keys', () => {
    expect(() => new BreakerGroup({ name: 'g', maxKeys: 0 })).toThrow(/maxKeys.*0/)
    expect(() => new BreakerGroup({ name: 'g', timeout: -3 })).toThrow(/timeout.*-3/)
    const group = new BreakerGroup({ name: 'g', registry: new Registry() })
    expect(() => group.get('has space')).toThrow(RangeError)
    group[Symbol.dispose]()
  })
})
