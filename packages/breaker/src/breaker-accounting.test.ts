import { execFileSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { Deadline, withDeadline } from '@ballast/deadline'
import fc from 'fast-check'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { Breaker, isDependencyFailure } from './breaker.js'

// What a breaker counts, and which outcomes decide its state.

/** Holds the event loop, as a GC pause or a CPU-heavy request elsewhere in the process would. */
function blockEventLoop(ms: number): void {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // busy
  }
}

const hang = ({ signal }: { signal: AbortSignal }) =>
  new Promise<string>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }))

async function series(registry: Registry, name: string): Promise<number | undefined> {
  return (await registry.getSingleMetric(name)?.get())?.values[0]?.value
}

class NotFound extends Error {}

function parse(text: string): Map<string, number> {
  const series = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line.startsWith('ballast_breaker')) continue
    const at = line.lastIndexOf(' ')
    series.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return series
}

function promtool(text: string): string | undefined {
  try {
    execFileSync('which', ['promtool'], { stdio: 'ignore' })
  } catch {
    return undefined
  }
  return execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] })
}

describe('metrics tell exactly what happened', () => {
  it('every ballast_breaker_* series has the expected value after a known sequence', async () => {
    const registry = new Registry()
    const b = new Breaker<string>({
      name: 'audit',
      registry,
      timeout: 30,
      volumeThreshold: 4,
      errorThresholdPercentage: 50,
      resetTimeout: 60,
      retry: { attempts: 1 },
      isFailure: (error) => !(error instanceof NotFound) && isDependencyFailure(error),
    })
    const initial = parse(await registry.metrics())
    expect(initial.size).toBe(82)
    for (const [key, v] of initial) {
      if (key.startsWith('ballast_breaker_state{') && key.includes('state="closed"')) expect(v).toBe(1)
      else if (key.startsWith('ballast_breaker_failure_threshold_ratio')) expect(v).toBe(0.5)
      else expect(v, key).toBe(0)
    }

    // 1. success
    expect(await b.execute(async () => 'ok')).toBe('ok')
    // 2. an error isFailure rejects: rethrown, outcome ignored, no fallback
    await expect(b.execute(async () => Promise.reject(new NotFound('404')), { fallback: () => 'fb' })).rejects.toThrow('404')
    // 3. failure, then the retry succeeds
    expect(await b.execute(async ({ attempt }) => (attempt === 0 ? Promise.reject(new Error('500')) : 'second'))).toBe('second')
    // 4. two attempt timeouts (the second trips: 3 failures / 5 calls), the fallback throws
    await expect(b.execute(hang, { fallback: () => Promise.reject(new Error('fallback down')) })).rejects.toThrow('fallback down')
    expect(b.state).toBe('open')
    // 5. refused while open, the fallback answers
    expect(await b.execute(async () => 'ran', { fallback: ({ reason }) => `fb:${reason}` })).toBe('fb:open')
    // 6. half-open: a trial in flight, a concurrent caller refused
    await sleep(120)
    expect(b.state).toBe('half-open')
    let finish!: (value: string) => void
    const trial = b.execute(() => new Promise<string>((resolve) => (finish = resolve)))
    await expect(b.execute(async () => 'ran')).rejects.toMatchObject({ reason: 'half-open' })
    finish('trial ok')
    expect(await trial).toBe('trial ok')
    expect(b.state).toBe('closed')

    const text = await registry.metrics()
    const s = parse(text)
    const L = (name: string, labels = '') => `ballast_breaker_${name}{breaker="audit"${labels}}`
    const expected: Record<string, number> = {
      [L('state', ',state="closed"')]: 1,
      [L('state', ',state="open"')]: 0,
      [L('state', ',state="half_open"')]: 0,
      [L('state', ',state="disabled"')]: 0,
      [L('transitions_total', ',state="closed"')]: 1,
      [L('transitions_total', ',state="open"')]: 1,
      [L('transitions_total', ',state="half_open"')]: 1,
      [L('transitions_total', ',state="disabled"')]: 0,
      [L('calls_total', ',outcome="success"')]: 3,
      [L('calls_total', ',outcome="failure"')]: 1,
      [L('calls_total', ',outcome="timeout"')]: 2,
      [L('calls_total', ',outcome="rejected"')]: 2,
      [L('calls_total', ',outcome="ignored"')]: 1,
      [L('call_duration_seconds_count', ',outcome="success"')]: 3,
      [L('call_duration_seconds_count', ',outcome="failure"')]: 1,
      [L('call_duration_seconds_count', ',outcome="timeout"')]: 2,
      [L('call_duration_seconds_count', ',outcome="ignored"')]: 1,
      [L('rejected_calls_total', ',reason="open"')]: 1,
      [L('rejected_calls_total', ',reason="half_open"')]: 1,
      [L('rejected_calls_total', ',reason="capacity"')]: 0,
      [L('fallbacks_total', ',result="success"')]: 1,
      [L('fallbacks_total', ',result="failure"')]: 1,
      [L('retries_total')]: 2,
      // closing started a new window: the failures that opened the circuit left it
      [L('failure_ratio')]: 0,
      [L('failure_threshold_ratio')]: 0.5,
      [L('concurrent_calls')]: 0,
    }
    for (const [key, v] of Object.entries(expected)) expect(s.get(key), key).toBe(v)
    // timeouts took at least their budget; every histogram's +Inf bucket equals its count
    expect(s.get(L('call_duration_seconds_sum', ',outcome="timeout"'))).toBeGreaterThanOrEqual(0.05)
    for (const outcome of ['success', 'failure', 'timeout', 'ignored']) {
      const inf = [...s.keys()].find(
        (k) => k.includes('call_duration_seconds_bucket') && k.includes('le="+Inf"') && k.includes(`outcome="${outcome}"`),
      )
      expect(inf, outcome).toBeDefined()
      expect(s.get(inf as string), outcome).toBe(s.get(L('call_duration_seconds_count', `,outcome="${outcome}"`)))
    }
    expect(s.size).toBe(82)
    const lint = promtool(text)
    if (lint !== undefined) expect(lint.trim()).toBe('')

    b[Symbol.dispose]()
    expect(parse(await registry.metrics()).size).toBe(0)
  })

  it('a call whose caller deadline had already expired is not an attempt that ran is counted, but not in the duration histogram of attempts that ran', async () => {
    const registry = new Registry()
    const b = new Breaker({ name: 'audit', registry })
    let ran = 0
    using expired = Deadline.after(0)
    await expect(
      expired.run(() =>
        b.execute(async () => {
          ran++
          return 'ran'
        }),
      ),
    ).rejects.toThrow()
    expect(ran).toBe(0)
    const s = parse(await registry.metrics())
    expect(s.get('ballast_breaker_calls_total{breaker="audit",outcome="ignored"}')).toBe(1)
    expect(s.get('ballast_breaker_call_duration_seconds_count{breaker="audit",outcome="ignored"}')).toBe(0)
    b[Symbol.dispose]()
  })
})

describe('an attempt ending after its caller deadline passed, under event-loop lag', () => {
  it('does not trip at exactly the threshold (2 failures / 4 calls = 50 %, not above 50 %)', async () => {
    const registry = new Registry()
    const b = new Breaker({ name: 'lag', registry, volumeThreshold: 1, errorThresholdPercentage: 50 })
    using deadline = Deadline.after(20)
    const lagged = deadline.run(() =>
      b.execute(() => new Promise<string>((_resolve, reject) => setTimeout(() => reject(new Error('upstream 500')), 1)), {
        fallback: ({ reason }) => `fallback:${reason}`,
      }),
    )
    blockEventLoop(40) // both the work's 1 ms timer and the deadline's 20 ms timer are now due
    expect(await lagged).toBe('fallback:deadline') // ignored: right
    await b.execute(async () => 'ok')
    await b.execute(async () => 'ok')
    await b.execute(() => Promise.reject(new Error('500'))).catch(() => undefined)
    await b.execute(() => Promise.reject(new Error('500'))).catch(() => undefined)
    const ratio = (await registry.getSingleMetric('ballast_breaker_failure_ratio')?.get())?.values[0]?.value
    expect(ratio).toBe(0.5)
    expect(b.state).toBe('closed')
    b[Symbol.dispose]()
  })
})

type Op = 'ok' | 'fail' | 'filtered' | 'deadline' | 'lagged'

describe('window and trip rule against a reference model (real short timers)', () => {
  it('random outcomes, expiring deadlines and event-loop lag: state and failure ratio match the model after every call', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.constantFrom<Op>('ok', 'fail', 'filtered', 'deadline', 'lagged'), { minLength: 1, maxLength: 7 }),
        async (volumeThreshold, ops) => {
          const registry = new Registry()
          const b = new Breaker<string>({
            name: 'model',
            registry,
            volumeThreshold,
            errorThresholdPercentage: 50,
            resetTimeout: 600_000,
            rollingCountTimeout: 600_000,
            isFailure: (error) => !(error instanceof NotFound) && isDependencyFailure(error),
          })
          const model = { state: 'closed', fires: 0, failures: 0 }
          try {
            for (const op of ops) {
              const fallback = ({ reason }: { reason: string }) => `fb:${reason}`
              if (op === 'ok') await b.execute(async () => 'ok', { fallback })
              else if (op === 'fail') await b.execute(() => Promise.reject(new Error('500')), { fallback })
              else if (op === 'filtered') await b.execute(() => Promise.reject(new NotFound('404')), { fallback }).catch(() => undefined)
              else if (op === 'deadline') {
                using deadline = Deadline.after(3)
                await deadline.run(() => b.execute(hang, { fallback }))
              } else {
                using deadline = Deadline.after(5)
                const call = deadline.run(() =>
                  b.execute(() => new Promise<string>((_resolve, reject) => setTimeout(() => reject(new Error('500')), 1)), { fallback }),
                )
                blockEventLoop(12)
                await call
              }
              // The model: rejected while open; ignored calls leave the window; failures trip above 50 %.
              if (model.state === 'closed') {
                if (op === 'ok') model.fires++
                if (op === 'fail') {
                  model.fires++
                  model.failures++
                  if (model.fires >= volumeThreshold && (model.failures / model.fires) * 100 > 50) model.state = 'open'
                }
              }
              expect(b.state, `after ${op} in ${ops.join(',')}`).toBe(model.state)
              const ratio = (await registry.getSingleMetric('ballast_breaker_failure_ratio')?.get())?.values[0]?.value
              expect(ratio, `ratio after ${op} in ${ops.join(',')}`).toBeCloseTo(model.fires > 0 ? model.failures / model.fires : 0, 9)
            }
          } finally {
            b[Symbol.dispose]()
          }
        },
      ),
      { numRuns: 40, seed: 42 },
    )
  })
})

describe('only the half-open trial decides', () => {
  it('a call admitted before the circuit opened neither closes nor reopens it once half-open', async () => {
    const b = new Breaker<string>({
      name: 'stale',
      registry: new Registry(),
      volumeThreshold: 1,
      errorThresholdPercentage: 0,
      resetTimeout: 30,
      timeout: 5_000, // longer than resetTimeout: a call admitted before the trip outlives the open period
    })
    let finishStale!: (value: string) => void
    let failStale!: (error: Error) => void
    const staleSuccess = b.execute(() => new Promise<string>((resolve) => (finishStale = resolve)))
    const staleFailure = b.execute(() => new Promise<string>((_resolve, reject) => (failStale = reject))).catch(() => 'failed')
    await b.execute(() => Promise.reject(new Error('boom'))).catch(() => undefined)
    expect(b.state).toBe('open')
    await sleep(60)
    expect(b.state).toBe('half-open')
    let finishTrial!: (value: string) => void
    const trial = b.execute(() => new Promise<string>((resolve) => (finishTrial = resolve)))
    finishStale('stale ok')
    await staleSuccess
    expect(b.state).toBe('half-open')
    failStale(new Error('stale failure'))
    await staleFailure
    expect(b.state).toBe('half-open')
    await expect(b.execute(async () => 'ran')).rejects.toMatchObject({ reason: 'half-open' })
    finishTrial('trial ok')
    expect(await trial).toBe('trial ok')
    expect(b.state).toBe('closed')
    b[Symbol.dispose]()
  })

  it('a failure arriving while open does not restart the reset timer', async () => {
    const b = new Breaker<string>({
      name: 'stale',
      registry: new Registry(),
      volumeThreshold: 1,
      errorThresholdPercentage: 0,
      resetTimeout: 200,
      timeout: false,
    })
    let failStale!: (error: Error) => void
    const stale = b.execute(() => new Promise<string>((_resolve, reject) => (failStale = reject))).catch(() => 'failed')
    await b.execute(() => Promise.reject(new Error('boom'))).catch(() => undefined)
    expect(b.state).toBe('open')
    await sleep(120)
    failStale(new Error('late failure'))
    await stale
    // Half-open 200 ms after the trip, not 200 ms after the late failure.
    await expect.poll(() => b.state, { timeout: 2_000, interval: 5 }).toBe('half-open')
    expect(b.retryAfter()).toBe(0)
    b[Symbol.dispose]()
  })
})

describe('retries', () => {
  it('a retry the circuit opened against during the pause is not counted, and the failure stands', async () => {
    const registry = new Registry()
    const b = new Breaker({ name: 'retry', registry, volumeThreshold: 2, errorThresholdPercentage: 0, retry: { attempts: 1, delay: 100 } })
    let attempts = 0
    const call = b.execute(
      async () => {
        attempts++
        throw new Error('500')
      },
      { fallback: ({ reason }) => `fallback:${reason}` },
    )
    await sleep(5)
    await b.execute(() => Promise.reject(new Error('500'))).catch(() => undefined) // trips it during the pause
    expect(b.state).toBe('open')
    expect(await call).toBe('fallback:failure')
    expect(attempts).toBe(1)
    expect(await series(registry, 'ballast_breaker_retries_total')).toBe(0)
    b[Symbol.dispose]()
  })

  it("a retry with no free slot (the call's own timed-out attempt still holds it) keeps the timeout as the outcome", async () => {
    const registry = new Registry()
    const b = new Breaker<string>({ name: 'retry', registry, capacity: 1, timeout: 20, retry: { attempts: 1 }, volumeThreshold: 100 })
    let release!: () => void
    const result = await b.execute(() => new Promise<string>((resolve) => (release = () => resolve('late'))), {
      fallback: ({ reason }) => `fallback:${reason}`,
    })
    release()
    expect(result).toBe('fallback:timeout')
    expect(await series(registry, 'ballast_breaker_retries_total')).toBe(0)
    expect(await series(registry, 'ballast_breaker_rejected_calls_total')).toBe(0)
    b[Symbol.dispose]()
  })
})

describe('a deadline inside the work', () => {
  it('is judged by isFailure: the caller giving up by default, a failure when isFailure says so', async () => {
    const slowDependency = (signal: AbortSignal) =>
      new Promise<string>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }))
    const byDefault = new Breaker<string>({ name: 'inner', registry: new Registry(), volumeThreshold: 1, errorThresholdPercentage: 0 })
    const counting = new Breaker<string>({
      name: 'inner',
      registry: new Registry(),
      volumeThreshold: 1,
      errorThresholdPercentage: 0,
      isFailure: () => true,
    })
    using caller = Deadline.after(5_000)
    const outcome = (b: Breaker<string>) =>
      caller.run(() =>
        b
          .execute(() => withDeadline(20, slowDependency), { fallback: ({ reason }) => `fallback:${reason}` })
          .catch((error: unknown) => `rejected:${(error as Error).name}`),
      )
    expect(await outcome(byDefault)).toBe('rejected:DeadlineExceededError')
    expect(byDefault.state).toBe('closed')
    expect(await outcome(counting)).toBe('fallback:failure')
    expect(counting.state).toBe('open')
    byDefault[Symbol.dispose]()
    counting[Symbol.dispose]()
  })
})
