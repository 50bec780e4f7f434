import { mock } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type QueueHooks, ranOnBusyLoop, type TimerQueue, TimerQueues } from './timer-queue.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length

/** A minimal item: due at `dueAt`, `fired` once expired, taken out of its queue on expiry or cancel. */
class Job {
  readonly dueAt: number
  queue: TimerQueue<Job> | undefined
  fired = false
  constructor(queues: TimerQueues<Job>, ms: number) {
    this.dueAt = performance.now() + ms
    this.queue = queues.add(ms, this)
  }
  leave(): void {
    const queue = this.queue
    this.queue = undefined
    queue?.removed()
  }
}

const hooks: QueueHooks<Job> = {
  expiresAt: (job) => job.dueAt,
  queued: (job, queue) => job.queue === queue,
  fire: (job) => {
    job.fired = true
    job.leave()
  },
}

afterEach(() => {
  vi.useRealTimers()
})

describe('TimerQueues', () => {
  it('fires every item of a delay in order on one Node timer, skipping cancelled ones', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] })
    const queues = new TimerQueues(hooks)
    const jobs: Job[] = []
    for (let i = 0; i < 100; i++) {
      jobs.push(new Job(queues, 50))
      vi.advanceTimersByTime(1)
    }
    // Created 1 ms apart: at t = 100 the first 51 are due (t0 + 50 .. t0 + 100).
    expect(jobs.filter((job) => job.fired).length).toBe(51)
    for (const job of jobs.filter((_, i) => i % 2 === 1)) job.leave()
    vi.advanceTimersByTime(10)
    expect(jobs.filter((job) => job.fired).length).toBe(51 + 5)
    vi.advanceTimersByTime(200)
    expect(jobs.map((job) => job.fired)).toEqual(jobs.map((_, i) => i <= 50 || i % 2 === 0))
    expect(jobs.every((job) => job.queue === undefined)).toBe(true)
  })

  it('holds one active timer per delay while items are queued and none once they are gone', async () => {
    const queues = new TimerQueues(hooks)
    const before = timers()
    const a = Array.from({ length: 500 }, () => new Job(queues, 1_000))
    const b = Array.from({ length: 500 }, () => new Job(queues, 2_000))
    expect(timers()).toBe(before + 2)
    for (const job of a) job.leave()
    expect(timers()).toBe(before + 1)
    for (const job of b) job.leave()
    expect(timers()).toBe(before)
    const due = new Job(queues, 5)
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(due.fired).toBe(true)
    expect(timers()).toBeLessThanOrEqual(before)
  })

  it('lets removed items go while the queue never empties, behind the head and behind a long-lived head', async () => {
    const queues = new TimerQueues(hooks)
    const before = timers()
    // Requests overlapping without a pause: the next one is queued before the last one leaves.
    let previous = new Job(queues, 60_000)
    const overlapping: WeakRef<Job>[] = []
    for (let i = 0; i < 5_000; i++) {
      const next = new Job(queues, 60_000)
      overlapping.push(new WeakRef(previous))
      previous.leave()
      previous = next
    }
    // A long-lived item at the head, short-lived ones coming and going behind it.
    const longLived = new Job(queues, 30_000)
    const behind: WeakRef<Job>[] = []
    for (let i = 0; i < 5_000; i++) {
      const job = new Job(queues, 30_000)
      behind.push(new WeakRef(job))
      job.leave()
    }
    // WeakRef targets stay alive until the job that made them ends.
    await new Promise((resolve) => setImmediate(resolve))
    gc()
    const kept = (refs: WeakRef<Job>[]) => refs.filter((ref) => ref.deref() !== undefined).length
    // Up to about twice the live items (plus a constant) may wait for the next compaction.
    expect(kept(overlapping)).toBeLessThan(100)
    expect(kept(behind)).toBeLessThan(100)
    previous.leave()
    longLived.leave()
    expect(timers()).toBe(before)
  })
})

describe('TimerQueues and node:test mock timers', () => {
  it('dropping queues of a mock clock that was reset since leaves the timers it arms later alone', () => {
    mock.timers.enable({ apis: ['setTimeout'] })
    const queues = new TimerQueues(hooks)
    let jobs: Job[]
    try {
      // More distinct delays than are kept idle: an emptied queue is dropped at once.
      jobs = Array.from({ length: 70 }, (_, i) => new Job(queues, 1_000 + i))
    } finally {
      mock.timers.reset()
    }
    for (const job of jobs) job.leave()
    mock.timers.enable({ apis: ['setTimeout'] })
    try {
      const job = new Job(new TimerQueues(hooks), 10)
      mock.timers.tick(10)
      expect(job.fired).toBe(true)
    } finally {
      mock.timers.reset()
    }
  })
})

describe("TimerQueues when performance.now() is not on the timers' clock", () => {
  // Fake timers that leave `performance` real (node:test's mock timers cannot fake it), or
  // a fake `performance` installed after items were queued (restarting near 0): the items'
  // clock, performance.now(), is set by hand here, and the timers' clock is advanced apart.
  let now = 0
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    vi.spyOn(performance, 'now').mockImplementation(() => now)
  })
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it("fires every item queued at one instant once the timers' clock has gone their delay", () => {
    const queues = new TimerQueues(hooks)
    now = 100
    const first = new Job(queues, 1_000)
    now = 102 // the next request, 2 ms of real time later; the fake clock has not moved
    const second = new Job(queues, 1_000)
    vi.advanceTimersByTime(1_000)
    expect([first.fired, second.fired]).toEqual([true, false])
    vi.advanceTimersByTime(1)
    expect(second.fired).toBe(false)
    vi.advanceTimersByTime(1)
    expect(second.fired).toBe(true)
  })

  it('fires items queued before performance.now() restarted near 0 on time', () => {
    const queues = new TimerQueues(hooks)
    now = 5_000 // the worker's uptime
    const first = new Job(queues, 30)
    now = 5_002
    const second = new Job(queues, 30)
    now = 0
    vi.advanceTimersByTime(30)
    expect([first.fired, second.fired]).toEqual([true, false])
    vi.advanceTimersByTime(2)
    expect(second.fired).toBe(true)
  })

  it('on one clock, after a timer that fired late (a busy event loop), times the next item from the clock: not early, not a delay late', () => {
    const queues = new TimerQueues(hooks)
    now = 0
    const first = new Job(queues, 20)
    now = 5
    const second = new Job(queues, 20)
    now = 40
    const third = new Job(queues, 20)
    // The timer armed for `first` (due 20) runs only at 40: `first` and `second` are due.
    vi.advanceTimersByTime(20)
    expect([first.fired, second.fired, third.fired]).toEqual([true, true, false])
    now = 59
    vi.advanceTimersByTime(19)
    expect(third.fired).toBe(false)
    now = 60
    vi.advanceTimersByTime(1)
    expect(third.fired).toBe(true)
  })
})

describe('ranOnBusyLoop', () => {
  it("is true for a timer more than 1 ms late on Node's own timers, never under fake ones", () => {
    expect(ranOnBusyLoop(100, 101)).toBe(false)
    expect(ranOnBusyLoop(100, 101.5)).toBe(true)
    expect(ranOnBusyLoop(100, 250)).toBe(true)
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    try {
      // The real clock far past the due time says only how fast the test runs.
      expect(ranOnBusyLoop(100, 250)).toBe(false)
      expect(ranOnBusyLoop(100, 250, globalThis.setTimeout)).toBe(false)
    } finally {
      vi.useRealTimers()
    }
  })
})
