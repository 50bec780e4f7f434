import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type QueueHooks, type TimerQueue, TimerQueues } from './timer-queue.js'

class Job {
  readonly id: number
  readonly dueAt: number
  queue: TimerQueue<Job> | undefined
  firedAt: number | undefined
  constructor(id: number, queues: TimerQueues<Job>, ms: number) {
    this.id = id
    this.dueAt = performance.now() + ms
    this.queue = queues.add(ms, this)
  }
  leave(): void {
    const queue = this.queue
    this.queue = undefined
    queue?.removed()
  }
}

const fired: number[] = []
const hooks: QueueHooks<Job> = {
  expiresAt: (job) => job.dueAt,
  queued: (job, queue) => job.queue === queue,
  fire: (job) => {
    job.firedAt = performance.now()
    fired.push(job.id)
    job.leave()
  },
}

type Op = { kind: 'add'; delay: number } | { kind: 'remove'; pick: number } | { kind: 'advance'; ms: number }
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('add' as const),
      delay: fc.oneof(fc.constantFrom(1, 2, 5, 10, 10, 10, 30, 100), fc.integer({ min: 1, max: 120 })),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 150 }) }) },
)

afterEach(() => vi.useRealTimers())
let totalFired = 0

describe('TimerQueues against a naive model', () => {
  it('fires exactly the live items that are due, never early, in expiry order', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 50, maxLength: 300 }), (ops) => {
        vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] })
        try {
          fired.length = 0
          const queues = new TimerQueues(hooks)
          const jobs: Job[] = []
          let id = 0
          for (const o of ops) {
            if (o.kind === 'add') jobs.push(new Job(id++, queues, o.delay))
            else if (o.kind === 'remove') {
              const live = jobs.filter((j) => j.queue !== undefined)
              if (live.length > 0) live[o.pick % live.length]?.leave()
            } else {
              fired.length = 0
              vi.advanceTimersByTime(o.ms)
              const now = performance.now()
              for (const job of jobs) {
                // model: a job still queued is not yet due; a fired job was due, and fired on time
                if (job.queue !== undefined) expect(job.dueAt).toBeGreaterThan(now)
                if (job.firedAt !== undefined) {
                  expect(job.firedAt).toBeGreaterThanOrEqual(job.dueAt)
                  expect(job.firedAt).toBeLessThanOrEqual(job.dueAt + 1)
                }
              }
              const dues = fired.map((i) => jobs[i]?.dueAt ?? 0)
              expect(dues).toEqual([...dues].sort((a, b) => a - b))
            }
          }
          totalFired += jobs.filter((j) => j.firedAt !== undefined).length
          for (const job of jobs) job.leave()
        } finally {
          vi.useRealTimers()
        }
      }),
      { numRuns: 400 },
    )
    console.log('fired', totalFired)
  })
})
