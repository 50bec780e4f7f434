import { Deadline } from '@ballast/deadline'
import fc from 'fast-check'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Breaker, type BreakerState } from './breaker.js'

// A small reference model of the breaker's state machine (opossum's rules plus
// what ballast adds: attempt timeouts count as failures, a caller's expiring
// deadline is taken back out of the window and hands a half-open trial back,
// only the half-open trial closes or reopens the circuit).
// Fake timers are the clock of both; timers that fall due at the same instant
// fire in creation/re-arm order, which the model mirrors with `order`.

interface Params {
  timeout: number
  resetTimeout: number
  volumeThreshold: number
  errorThresholdPercentage: number
  rollingCountTimeout: number
  rollingCountBuckets: number
}

type Op = { type: 'start'; deadline: number | null } | { type: 'settle'; pick: number; ok: boolean } | { type: 'advance'; ms: number }

interface Bucket {
  fires: number
  failures: number
}

interface ModelCall {
  id: number
  running: boolean
  bucket: Bucket | undefined
  trial: boolean
  expected: string | undefined
  expiresAt?: number
  deadlineAt?: number
}

type TimerSpec = { at: number } & ({ kind: 'rotate' } | { kind: 'reset' } | { kind: 'timeouts' } | { kind: 'deadline'; call: ModelCall })
type Timer = TimerSpec & { order: number }

class Model {
  state: Exclude<BreakerState, 'disabled'> = 'closed'
  pendingClose = false
  openedAt = 0
  now = 0
  order = 0
  buckets: Bucket[]
  timers: Timer[] = []
  rotating = false
  // Attempt timeouts: a FIFO of timed calls and one timer armed for the oldest
  // (see AttemptTimeouts), re-armed for the next live one when it fires.
  timed: ModelCall[] = []
  timeoutTimer: Timer | undefined = undefined
  counts = { success: 0, failure: 0, timeout: 0, rejected: 0, ignored: 0 }

  constructor(readonly p: Params) {
    this.buckets = Array.from({ length: p.rollingCountBuckets }, () => ({ fires: 0, failures: 0 }))
  }

  // The window turns every period while it holds calls or failures: armed by the count
  // that finds it stopped, stopped by the turn that leaves it empty.
  #counted(): void {
    if (this.rotating) return
    this.rotating = true
    this.#timer({ kind: 'rotate', at: this.now + this.p.rollingCountTimeout / this.p.rollingCountBuckets })
  }

  #timer(timer: TimerSpec): Timer {
    const created: Timer = { ...timer, order: this.order++ }
    this.timers.push(created)
    return created
  }

  #clear(predicate: (timer: Timer) => boolean): void {
    this.timers = this.timers.filter((timer) => !predicate(timer))
  }

  start(call: ModelCall, deadline: number | null): void {
    if (this.state !== 'closed' && !this.pendingClose) {
      call.expected = this.state === 'half-open' ? 'fb:half-open' : 'fb:open'
      call.running = false
      this.counts.rejected++
      return
    }
    call.trial = this.state === 'half-open'
    this.pendingClose = false
    call.bucket = this.buckets[0] as Bucket
    call.bucket.fires++
    if (deadline !== null) {
      call.deadlineAt = this.now + deadline
      this.#timer({ kind: 'deadline', call, at: call.deadlineAt })
    }
    // Counted after the caller made its deadline, before the attempt arms its timeout.
    this.#counted()
    // Timed even when its deadline comes first: that timer bounds it should the deadline be disposed.
    call.expiresAt = this.now + this.p.timeout
    this.timed.push(call)
    this.timeoutTimer ??= this.#timer({ kind: 'timeouts', at: this.now + this.p.timeout })
  }

  settle(call: ModelCall, ok: boolean): void {
    if (!call.running) return
    this.#end(call)
    if (ok) {
      call.expected = 'ok'
      this.counts.success++
      if (this.state === 'half-open' && call.trial) this.#close()
    } else {
      call.expected = 'fb:failure'
      this.counts.failure++
      this.#fail(call)
    }
  }

  #end(call: ModelCall): void {
    call.running = false
    this.#clear((timer) => timer.kind === 'deadline' && timer.call === call)
    this.timed = this.timed.filter((timed) => timed !== call)
  }

  #fail(call: ModelCall): void {
    // opossum counts a failure in the bucket current when it happens, not in the
    // one its call was fired in.
    ;(this.buckets[0] as Bucket).failures++
    this.#counted()
    // A call admitted while closed that fails once the circuit is open or half-open only counts: the trial decides.
    if (this.state !== 'closed' && !call.trial) return
    const fires = this.buckets.reduce((sum, b) => sum + b.fires, 0)
    const failures = this.buckets.reduce((sum, b) => sum + b.failures, 0)
    if (fires < this.p.volumeThreshold && this.state !== 'half-open') return
    if ((failures / fires) * 100 > this.p.errorThresholdPercentage || this.state === 'half-open') this.#open()
  }

  #open(): void {
    if (this.state === 'open') return
    this.state = 'open'
    this.pendingClose = false
    this.openedAt = this.now
    this.#timer({ kind: 'reset', at: this.now + this.p.resetTimeout })
  }

  #close(): void {
    this.state = 'closed'
    this.pendingClose = false
    // A new window: the failures that opened the circuit leave it.
    this.buckets = this.buckets.map(() => ({ fires: 0, failures: 0 }))
    this.#clear((timer) => timer.kind === 'reset')
  }

  advance(ms: number): void {
    const end = this.now + ms
    for (;;) {
      const due = this.timers.filter((timer) => timer.at <= end).sort((a, b) => a.at - b.at || a.order - b.order)[0]
      if (due === undefined) break
      this.now = due.at
      this.timers.splice(this.timers.indexOf(due), 1)
      if (due.kind === 'rotate') {
        this.buckets.pop()
        this.buckets.unshift({ fires: 0, failures: 0 })
        if (this.buckets.some((bucket) => bucket.fires !== 0 || bucket.failures !== 0)) {
          this.#timer({ kind: 'rotate', at: due.at + this.p.rollingCountTimeout / this.p.rollingCountBuckets })
        } else this.rotating = false
      } else if (due.kind === 'reset') {
        this.state = 'half-open'
        this.pendingClose = true
      } else if (due.kind === 'timeouts') {
        this.timeoutTimer = undefined
        const falling = this.timed.filter((call) => (call.expiresAt as number) <= due.at)
        // A call whose deadline falls due at the same instant is the deadline's: it ends as the caller's.
        for (const call of falling) if (call.deadlineAt !== undefined && call.deadlineAt <= due.at) this.#deadlineExpired(call)
        const expired = falling.filter((call) => call.running)
        for (const call of expired) {
          this.#end(call)
          call.expected = 'fb:timeout'
          this.counts.timeout++
        }
        const next = this.timed[0]
        if (next !== undefined) {
          this.timeoutTimer = this.#timer({ kind: 'timeouts', at: due.at + Math.max(1, Math.ceil((next.expiresAt as number) - due.at)) })
        }
        // opossum sees the rejections after the timer callback returned.
        for (const call of expired) this.#fail(call)
      } else if (due.kind === 'deadline') {
        this.#deadlineExpired(due.call)
      }
    }
    this.now = end
  }

  #deadlineExpired(call: ModelCall): void {
    this.#end(call)
    call.expected = 'fb:deadline'
    this.counts.ignored++
    ;(call.bucket as Bucket).fires--
    if (call.trial && this.state === 'half-open' && !this.pendingClose) this.pendingClose = true
  }

  retryAfter(): number {
    if (this.state === 'open') return Math.max(1, Math.ceil((this.openedAt + this.p.resetTimeout - this.now) / 1000))
    if (this.state === 'half-open' && !this.pendingClose) return 1
    return 0
  }

  failureRatio(): number {
    const fires = this.buckets.reduce((sum, b) => sum + b.fires, 0)
    const failures = this.buckets.reduce((sum, b) => sum + b.failures, 0)
    return fires > 0 ? Math.min(1, Math.max(0, failures / fires)) : 0
  }
}

const params = fc.record({
  timeout: fc.constantFrom(300, 1_000),
  resetTimeout: fc.integer({ min: 200, max: 5_000 }),
  volumeThreshold: fc.integer({ min: 0, max: 6 }),
  errorThresholdPercentage: fc.constantFrom(0, 25, 50, 75),
  rollingCountTimeout: fc.constant(4_000),
  rollingCountBuckets: fc.constantFrom(1, 4, 8),
})

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ type: fc.constant('start' as const), deadline: fc.option(fc.integer({ min: 1, max: 1_500 }), { freq: 2 }) }),
  },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('settle' as const), pick: fc.nat(), ok: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      type: fc.constant('advance' as const),
      ms: fc.oneof(fc.integer({ min: 1, max: 1_500 }), fc.integer({ min: 1_000, max: 6_000 })),
    }),
  },
)

async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const data = await registry.getSingleMetric(name)?.get()
  return data?.values.find((v) => Object.entries(labels).every(([key, value]) => v.labels[key] === value))?.value
}

afterEach(() => {
  vi.useRealTimers()
})

describe('Breaker state machine (model-based)', () => {
  it('never diverges from the reference model', async () => {
    let runs = 0
    await fc.assert(
      fc.asyncProperty(params, fc.array(op, { minLength: 1, maxLength: 60 }), async (p, ops) => {
        runs++
        vi.useFakeTimers({ now: 1_700_000_000_000 })
        const registry = new Registry()
        const breaker = new Breaker({ name: 'model', registry, ...p })
        const model = new Model(p)
        const calls: ModelCall[] = []
        const works = new Map<number, { resolve: () => void; reject: (error: Error) => void; pending: boolean }>()
        const results = new Map<number, string>()
        try {
          for (const step of ops) {
            if (step.type === 'start') {
              const call: ModelCall = { id: calls.length, running: true, bucket: undefined, trial: false, expected: undefined }
              calls.push(call)
              const deadline = step.deadline === null ? undefined : Deadline.after(step.deadline)
              const execute = () =>
                breaker.execute(
                  () =>
                    new Promise<string>((resolve, reject) => {
                      works.set(call.id, { resolve: () => resolve('ok'), reject, pending: true })
                    }),
                  { fallback: ({ reason }) => `fb:${reason}` },
                )
              const promise = deadline === undefined ? execute() : deadline.run(execute)
              promise.then(
                (value) => results.set(call.id, value),
                (error: unknown) => results.set(call.id, `error:${String(error)}`),
              )
              model.start(call, step.deadline)
            } else if (step.type === 'settle') {
              const pending = [...works.entries()].filter(([, work]) => work.pending)
              if (pending.length === 0) continue
              const [id, work] = pending[step.pick % pending.length] as [
                number,
                { resolve: () => void; reject: (error: Error) => void; pending: boolean },
              ]
              work.pending = false
              if (step.ok) work.resolve()
              else work.reject(new Error('dependency failed'))
              model.settle(calls[id] as ModelCall, step.ok)
            } else {
              await vi.advanceTimersByTimeAsync(step.ms)
              model.advance(step.ms)
            }
            await vi.advanceTimersByTimeAsync(0)
            expect(breaker.state).toBe(model.state)
            expect(breaker.retryAfter()).toBe(model.retryAfter())
            for (const call of calls) expect(results.get(call.id)).toBe(call.expected)
          }
          expect(await metric(registry, 'ballast_breaker_failure_ratio', { breaker: 'model' })).toBeCloseTo(model.failureRatio(), 9)
          for (const [outcome, count] of Object.entries(model.counts)) {
            expect(await metric(registry, 'ballast_breaker_calls_total', { breaker: 'model', outcome })).toBe(count)
          }
          expect(await metric(registry, 'ballast_breaker_state', { breaker: 'model', state: model.state.replace('-', '_') })).toBe(1)
        } finally {
          breaker[Symbol.dispose]()
          vi.useRealTimers()
        }
      }),
      { numRuns: 1_000 },
    )
    expect(runs).toBeGreaterThanOrEqual(1_000)
  })
})
