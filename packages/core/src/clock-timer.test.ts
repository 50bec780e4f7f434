import { afterEach, describe, expect, it, vi } from 'vitest'
import { ClockTimer } from './clock-timer.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('ClockTimer', () => {
  it('runs its task after the delay, again when the task asks, not once stopped', () => {
    vi.useFakeTimers()
    const ticks: number[] = []
    const timer = new ClockTimer<number[]>((seen) => {
      seen.push(Date.now())
      if (seen.length < 3) timer.again(100)
      else timer.stop()
    }, ticks)
    const started = Date.now()
    timer.start(100)
    expect(timer.current).toBe(true)
    vi.advanceTimersByTime(1_000)
    expect(ticks.map((at) => at - started)).toEqual([100, 200, 300])
    expect(timer.current).toBe(false)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('tells when the clock it runs on was replaced, and a start moves it to the clock in place', () => {
    const ticks: string[] = []
    const timer = new ClockTimer<string[]>((seen) => seen.push('tick'), ticks)
    vi.useFakeTimers()
    timer.start(100)
    vi.useRealTimers()
    expect(timer.current).toBe(false)
    vi.useFakeTimers()
    expect(timer.current).toBe(false)
    timer.start(50)
    expect(timer.current).toBe(true)
    vi.advanceTimersByTime(100)
    expect(ticks).toEqual(['tick'])
    timer.stop()
  })

  it('clears a handle only through the clock that armed it, while that clock is in place', () => {
    const realSet = globalThis.setTimeout
    const realClear = globalThis.clearTimeout
    const handle = { unref: vi.fn(() => handle) }
    const set = vi.fn(() => handle) as unknown as typeof setTimeout
    const clear = vi.fn() as unknown as typeof clearTimeout
    const timer = new ClockTimer<null>(() => {}, null)
    try {
      globalThis.setTimeout = set
      globalThis.clearTimeout = clear
      timer.start(100)
      expect(handle.unref).toHaveBeenCalled()
      globalThis.setTimeout = realSet
      globalThis.clearTimeout = realClear
      timer.stop() // that clock was replaced (a mock clock reset since): its handle is left alone
      expect(clear).not.toHaveBeenCalled()
      globalThis.setTimeout = set
      globalThis.clearTimeout = clear
      timer.start(100)
      timer.stop()
      expect(clear).toHaveBeenCalledWith(handle)
    } finally {
      globalThis.setTimeout = realSet
      globalThis.clearTimeout = realClear
    }
  })
})
