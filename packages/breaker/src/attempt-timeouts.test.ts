import { afterEach, describe, expect, it, vi } from 'vitest'
import { AttemptTimeouts, type Expiring } from './attempt-timeouts.js'

// Pure queue/timer logic: fake timers drive the clock (performance.now included).

class FakeAttempt implements Expiring {
  readonly expiresAt: number
  ended = false
  timedOutAt: number | undefined = undefined

  constructor(
    readonly queue: AttemptTimeouts<FakeAttempt>,
    budget: number,
  ) {
    this.expiresAt = performance.now() + budget
    queue.add(this)
  }

  timedOut(): void {
    this.timedOutAt = performance.now()
    this.end()
  }

  end(): void {
    if (this.ended) return
    this.ended = true
    this.queue.ended()
  }
}

afterEach(() => {
  vi.useRealTimers()
  vi.restoreAllMocks()
})

describe('AttemptTimeouts', () => {
  it('times every attempt out at its own expiry with a single timer', () => {
    vi.useFakeTimers()
    const queue = new AttemptTimeouts<FakeAttempt>(100)
    const first = new FakeAttempt(queue, 100)
    vi.advanceTimersByTime(30)
    const second = new FakeAttempt(queue, 100)
    vi.advanceTimersByTime(30)
    const third = new FakeAttempt(queue, 100)
    expect(vi.getTimerCount()).toBe(1)
    first.end() // the head settles early: the timer stays armed for its expiry
    vi.advanceTimersByTime(69) // t = 129
    expect(second.timedOutAt).toBeUndefined()
    vi.advanceTimersByTime(1) // t = 130
    expect(second.timedOutAt).toBe(130)
    expect(third.timedOutAt).toBeUndefined()
    vi.advanceTimersByTime(30) // t = 160
    expect(third.timedOutAt).toBe(160)
    expect(first.timedOutAt).toBeUndefined()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('never times an attempt out before its expiry on the clock, though Node may run the timer up to 1 ms early', () => {
    // Node arms timers on its loop clock floored to the millisecond: armed at 1000.7 for
    // 100 ms, a timer may run when performance.now() reads 1100.2, before the 1100.7 due.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    let now = 1000.7
    vi.spyOn(performance, 'now').mockImplementation(() => now)
    const queue = new AttemptTimeouts<FakeAttempt>(100)
    const attempt = new FakeAttempt(queue, 100)
    now = 1100.2
    vi.advanceTimersByTime(100)
    expect(attempt.timedOutAt).toBeUndefined()
    now = 1100.7
    vi.advanceTimersByTime(1)
    expect(attempt.timedOutAt).toBe(1100.7)
    // A clock more than a millisecond behind the timer is another clock (setTimeout faked,
    // performance not): the attempt the timer was armed for is due.
    const behind = new FakeAttempt(queue, 100)
    vi.advanceTimersByTime(100)
    expect(behind.timedOutAt).toBe(1100.7)
  })

  it('lets an idle breaker hold no active handle, and keeps the queue bounded behind a stuck head', async () => {
    const queue = new AttemptTimeouts<FakeAttempt>(60_000)
    const baseline = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
    const stuck = new FakeAttempt(queue, 60_000)
    expect(process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length).toBe(baseline + 1)
    for (let i = 0; i < 10_000; i++) new FakeAttempt(queue, 60_000).end()
    // Ended attempts behind the stuck head are dropped, not kept for 60 s.
    expect(queue.queued).toBeLessThanOrEqual(2 * 1 + 64 + 1)
    stuck.end()
    expect(process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length).toBe(baseline)
    queue.dispose()
  })
})
