import { getEventListeners, once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { isBallastError } from '@ballast/core'
import { ClientClosedError, Deadline, DeadlineCancelledError, DeadlineExceededError, withDeadline } from '@ballast/deadline'
import { TimeoutError } from 'p-timeout'
import { Registry, register } from 'prom-client'
import { describe, expect, it, vi } from 'vitest'
import { Breaker, type BreakerOptions, type CallContext, type FallbackContext, isDependencyFailure } from './breaker.js'
import { BreakerGroup } from './breaker-group.js'
import { BreakerTimeoutError, BrokenCircuitError } from './errors.js'

function breaker<F = never>(options: Partial<BreakerOptions<F>> = {}): { b: Breaker<F>; registry: Registry } {
  const registry = options.registry ?? new Registry()
  const b = new Breaker<F>({ name: 'test', ...options, registry } as BreakerOptions<F>)
  return { b, registry }
}

async function value(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name)
  if (metric === undefined) return undefined
  const data = await metric.get()
  const found = data.values.find(
    (v) => (v as { metricName?: string }).metricName === undefined && Object.entries(labels).every(([k, l]) => v.labels[k] === l),
  )
  return found?.value
}

const fail = async (): Promise<never> => {
  throw new Error('upstream down')
}

/** Settles like `promise`, or rejects after `ms` (its timer cleared either way: later tests count timers). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/**
 * A slow upstream on 127.0.0.1: `/fast` answers at once, `/slow` after 5 s unless
 * its socket closes first. Records when `/slow` arrived and when its socket closed.
 */
async function slowUpstream() {
  let closed!: () => void
  const state = {
    url: '',
    requestAt: undefined as number | undefined,
    closedAt: undefined as number | undefined,
    socketClosed: new Promise<void>((resolve) => {
      closed = resolve
    }),
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
  const server = createServer((req, res) => {
    if (req.url === '/fast') {
      res.end('fast')
      return
    }
    state.requestAt = performance.now()
    const answer = setTimeout(() => res.end('late'), 5_000)
    req.socket.once('close', () => {
      clearTimeout(answer)
      state.closedAt = performance.now()
      closed()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return state
}

describe('Breaker options', () => {
  it('rejects bad options at construction, naming the option and the value', () => {
    expect(() => new Breaker({} as BreakerOptions)).toThrow(/option "name" must be .*got undefined/)
    expect(() => new Breaker({ name: 'has space' })).toThrow(RangeError)
    expect(() => new Breaker({ name: 'has space' })).toThrow(/'has space'/)
    expect(() => new Breaker({ name: 'x'.repeat(65) })).toThrow(RangeError)
    expect(() => new Breaker({ name: 'a', timeout: -1 })).toThrow(/option "timeout" must be a number >= 1, got -1/)
    expect(() => new Breaker({ name: 'a', timeout: '5' as unknown as number })).toThrow(
      new TypeError(`Breaker: option "timeout" must be a number >= 1 or false, got '5'`),
    )
    expect(() => new Breaker({ name: 'a', errorThresholdPercentage: 101 })).toThrow(/errorThresholdPercentage.*101/)
    expect(() => new Breaker({ name: 'a', volumeThreshold: 1.5 })).toThrow(/volumeThreshold.*1.5/)
    expect(() => new Breaker({ name: 'a', capacity: 0 })).toThrow(/capacity.*0/)
    expect(() => new Breaker({ name: 'a', retry: { attempts: -1 } })).toThrow(/retry.attempts.*-1/)
    expect(() => new Breaker({ name: 'a', fallback: 'x' as never })).toThrow(/fallback.*'x'/)
    expect(() => new Breaker({ name: 'a', rollingCountTimeout: 1000, rollingCountBuckets: 3 })).toThrow(/rollingCountBuckets.*3/)
    expect(() => new Breaker({ name: 'a', registry: {} as Registry })).toThrow(/registry/)
    expect(() => new Breaker({ name: 'a', timout: 800 } as never)).toThrow(
      new TypeError('Breaker: unknown option "timout" (did you mean "timeout"?), got 800'),
    )
    expect(() => new Breaker({ name: 'a', retry: { attempt: 3 } } as never)).toThrow(
      /unknown option "retry.attempt" \(did you mean "retry.attempts"\?\)/,
    )
    expect(() => new BreakerGroup({ name: 'g', maxkeys: 5 } as never)).toThrow(
      /BreakerGroup: unknown option "maxkeys" \(did you mean "maxKeys"\?\)/,
    )
  })

  it('takes an option given as undefined as absent (a config value passed through), in its types and at run time', async () => {
    const config: { timeout?: number; fallback?: () => number } = {}
    using b = new Breaker<number>({
      name: 'passed-through',
      registry: new Registry(),
      prefix: undefined,
      timeout: config.timeout,
      errorThresholdPercentage: undefined,
      volumeThreshold: undefined,
      resetTimeout: undefined,
      rollingCountTimeout: undefined,
      rollingCountBuckets: undefined,
      capacity: undefined,
      retry: { attempts: 1, delay: undefined },
      isFailure: undefined,
      fallback: config.fallback,
    })
    expect(await b.execute(async () => 7, { fallback: config.fallback })).toBe(7)
    expect(await b.wrap(async () => 8, { fallback: config.fallback })()).toBe(8)
    using group = new BreakerGroup({ name: 'passed-through-group', registry: new Registry(), maxKeys: undefined, idleTimeout: undefined })
    expect(group.get('a').state).toBe('closed')
  })

  it('rejects a call whose work, options or fallback are of the wrong kind, or whose options it does not know, naming the value', async () => {
    const b = new Breaker({ name: 'args', registry: new Registry() })
    await expect(b.execute('x' as never)).rejects.toThrow(new TypeError(`Breaker.execute: work must be a function, got 'x'`))
    // A fallback passed where the options go is refused, not ignored.
    await expect(b.execute(async () => 1, (() => 2) as never)).rejects.toThrow(/Breaker\.execute: option "options" must be an object, got/)
    await expect(b.execute(async () => 1, { fallback: 'x' as never })).rejects.toThrow(/option "fallback" must be a function, got 'x'/)
    expect(() => b.wrap(async () => 1, (() => 2) as never)).toThrow(/Breaker\.wrap: option "options" must be an object, got/)
    expect(() => b.wrap(async () => 1, { fallback: 1 as never })).toThrow(/Breaker\.wrap: option "fallback" must be a function, got 1/)
    expect(() => b.onOpen(5 as never)).toThrow(new TypeError('Breaker.onOpen: "listener" must be a function, got 5'))
    // A misspelt fallback would leave the call without one: refused, with the name it meant.
    let ran = false
    const work = async () => {
      ran = true
      throw new Error('down')
    }
    await expect(b.execute(work, { fallbak: () => 'cached' } as never)).rejects.toThrow(
      /Breaker\.execute: unknown option "fallbak" \(did you mean "fallback"\?\)/,
    )
    expect(ran).toBe(false)
    expect(() => b.wrap(work, { fallBack: () => 'cached' } as never)).toThrow(
      /Breaker\.wrap: unknown option "fallBack" \(did you mean "fallback"\?\)/,
    )
    expect(await b.execute(async () => 1, {})).toBe(1)
    b[Symbol.dispose]()
  })

  it('fails clearly, leaving nothing running, when a metric name is taken by an incompatible metric', async () => {
    const registry = new Registry()
    const { Counter } = await import('prom-client')
    new Counter({ name: 'ballast_breaker_calls_total', help: 'someone else', labelNames: ['other'], registers: [registry] })
    const timers = process.getActiveResourcesInfo().length
    expect(() => new Breaker({ name: 'clash', registry })).toThrow(/ballast_breaker_calls_total/)
    expect(process.getActiveResourcesInfo().length).toBeLessThanOrEqual(timers)
    // Another prefix avoids the clash.
    const ok = new Breaker({ name: 'clash', registry, prefix: 'app_' })
    ok[Symbol.dispose]()
  })

  it('registers nothing on import and shares metrics between breakers on one registry', async () => {
    // This file imported the package above; the global registry must still be empty.
    expect(await register.getMetricsAsJSON()).toEqual([])
    const registry = new Registry()
    const one = new Breaker({ name: 'one', registry })
    const two = new Breaker({ name: 'two', registry })
    const again = new Breaker({ name: 'one', registry })
    const text = await registry.metrics()
    expect(text).toContain('ballast_breaker_state{breaker="one",state="closed"} 1')
    expect(text).toContain('ballast_breaker_state{breaker="two",state="closed"} 1')
    for (const b of [one, two, again]) b[Symbol.dispose]()
  })

  it('breakers sharing a name share its series: disposing one keeps them counting for the other; the last removes them', async () => {
    const registry = new Registry()
    const calls = async () => {
      const metric = await registry.getSingleMetric('ballast_breaker_calls_total')?.get()
      return metric?.values.find((v) => v.labels.breaker === 'dup' && v.labels.outcome === 'success')?.value
    }
    const durations = async () => {
      const metric = await registry.getSingleMetric('ballast_breaker_call_duration_seconds')?.get()
      return metric?.values.find(
        (v) =>
          (v as { metricName?: string }).metricName?.endsWith('_count') && v.labels.breaker === 'dup' && v.labels.outcome === 'success',
      )?.value
    }
    const first = new Breaker({ name: 'dup', registry })
    await first.execute(async () => 'ok')
    // Made after the first counted a call: it shares the series without resetting them.
    const second = new Breaker({ name: 'dup', registry })
    await second.execute(async () => 'ok')
    expect(await calls()).toBe(2)
    expect(await durations()).toBe(2)
    first[Symbol.dispose]()
    expect(await calls()).toBe(2)
    await second.execute(async () => 'ok')
    expect(await calls()).toBe(3)
    expect(await registry.metrics()).toContain('ballast_breaker_state{breaker="dup",state="closed"} 1')
    second[Symbol.dispose]()
    expect(await calls()).toBeUndefined()
    expect(await registry.metrics()).not.toContain('breaker="dup"')
  })
})

describe('per-call cancellation', () => {
  it('gives every call its own signal: a timeout in one call never aborts another', async () => {
    const { b } = breaker({ timeout: 40, volumeThreshold: 100 })
    const signals: AbortSignal[] = []
    const slow = b.execute(({ signal }) => {
      signals.push(signal)
      return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    })
    // Starts before the slow call times out (t=40) and ends after it (t=60).
    await sleep(25)
    const fast = b.execute(async ({ signal }) => {
      signals.push(signal)
      await sleep(35)
      return signal.aborted
    })
    await expect(slow).rejects.toBeInstanceOf(BreakerTimeoutError)
    expect(await fast).toBe(false)
    expect(signals[0]?.reason).toBeInstanceOf(BreakerTimeoutError)
    const next = await b.execute(async ({ signal }) => signal.aborted)
    expect(next).toBe(false)
    expect(signals[0]).not.toBe(signals[1])
    b[Symbol.dispose]()
  })

  it('caps the attempt by the caller deadline, and its expiry is not a dependency failure', async () => {
    const { b, registry } = breaker({ timeout: 10_000, volumeThreshold: 1, errorThresholdPercentage: 0 })
    using deadline = Deadline.after(60)
    const started = performance.now()
    await expect(
      deadline.run(() =>
        b.execute(({ signal }) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))),
      ),
    ).rejects.toBeInstanceOf(DeadlineExceededError)
    const elapsed = performance.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(50)
    expect(elapsed).toBeLessThan(2_000)
    // Not a dependency failure: with threshold 0 and volume 1 one failure would trip.
    expect(b.state).toBe('closed')
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(1)
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    // That the link to the deadline is released when the attempt ends is shown in breaker-leak.test.ts.
    b[Symbol.dispose]()
  })

  it("the same when the deadline's signal was handed out before (to a query, a fetch): the work and the caller see its reason", async () => {
    const { b, registry } = breaker({ timeout: 10_000, volumeThreshold: 1, errorThresholdPercentage: 0 })
    using deadline = Deadline.after(30)
    const elsewhere = deadline.signal
    let workSaw: unknown
    const outcome = await deadline
      .run(() =>
        b.execute(
          ({ signal }) =>
            new Promise((_resolve, reject) =>
              signal.addEventListener('abort', () => {
                workSaw = signal.reason
                reject(signal.reason)
              }),
            ),
        ),
      )
      .catch((error: unknown) => error)
    expect(outcome).toBeInstanceOf(DeadlineExceededError)
    expect(workSaw).toBe(elsewhere.reason)
    expect(b.state).toBe('closed')
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(1)
    b[Symbol.dispose]()
  })

  it('work whose own deadline is cancelled because its request was answered is ignored, not a dependency failure', async () => {
    const { b, registry } = breaker({ timeout: 10_000, volumeThreshold: 1, errorThresholdPercentage: 0 })
    const request = Deadline.after(5_000)
    // Left running after the answer (stale-while-revalidate): its withDeadline is a child of the request's.
    const left = request.run(() => b.execute(() => withDeadline(1_000, () => sleep(200))).catch((error: unknown) => error))
    await sleep(10)
    request[Symbol.dispose]() // the response closed
    expect(await left).toBeInstanceOf(DeadlineCancelledError)
    expect(b.state).toBe('closed')
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(1)
    expect(isDependencyFailure(new DeadlineCancelledError(undefined, { disposed: true }))).toBe(false)
    b[Symbol.dispose]()
  })

  it("an inner deadline's expiry reported by a Node API (AbortError, the deadline's error as cause) is the caller's, as the error itself is", async () => {
    const { b, registry } = breaker({ timeout: 10_000, volumeThreshold: 3, errorThresholdPercentage: 50 })
    // The work bounds a wait with a deadline of its own and hands its signal to timers/promises.
    const bounded = async () => {
      using inner = Deadline.after(5)
      await sleep(1_000, undefined, { signal: inner.signal })
    }
    const errors: unknown[] = []
    for (let i = 0; i < 4; i++) errors.push(await b.execute(bounded).catch((error: unknown) => error))
    expect(errors.map((error) => [(error as Error).name, (error as Error).cause instanceof DeadlineExceededError])).toEqual(
      Array.from({ length: 4 }, () => ['AbortError', true]),
    )
    expect(b.state).toBe('closed')
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(4)
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(0)
    // An AbortError for any other reason is the dependency's, as that reason would be.
    const other = new Error('The operation was aborted', { cause: new Error('ECONNRESET') })
    other.name = 'AbortError'
    expect(isDependencyFailure(other)).toBe(true)
    b[Symbol.dispose]()
  })

  it('work that cancels its own deadline on a failure (stopping its siblings) is a failure: the breaker opens', async () => {
    const { b } = breaker({ timeout: 10_000, volumeThreshold: 3, errorThresholdPercentage: 50 })
    const fanOut = () =>
      withDeadline(1_000, async () => {
        const group = Deadline.current() as Deadline
        // One of two parallel calls answers 500: the other is called off, and the race rejects first.
        group.cancel()
        await sleep(1)
        throw new Error('500 from the dependency')
      })
    for (let i = 0; i < 3; i++) await b.execute(fanOut).catch(() => {})
    expect(b.state).toBe('open')
    expect(isDependencyFailure(new DeadlineCancelledError())).toBe(true)
    // A deadline linked to a connection that resets is cancelled with that error as cause: a failure too.
    const connection = new AbortController()
    const linked = Deadline.after(1_000, { signal: connection.signal })
    connection.abort(new Error('ECONNRESET'))
    expect(isDependencyFailure(linked.reason)).toBe(true)
    b[Symbol.dispose]()
  })

  it('bounds work left running under a deadline disposed before it ended (a request answered): timed out at timeout, its slot freed', async () => {
    const { b, registry } = breaker({ timeout: 150, capacity: 1, volumeThreshold: 100 })
    const hang = ({ signal }: CallContext) =>
      new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    let background: Promise<unknown> | undefined
    {
      using deadline = Deadline.after(60)
      background = deadline.run(() => b.execute(hang)).catch((error: unknown) => error)
      await sleep(10)
    } // disposed here, as deadline() disposes a request's deadline when the response closes
    expect(await within(background, 2_000, 'the call under the disposed deadline')).toBeInstanceOf(BreakerTimeoutError)
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'timeout' })).toBe(1)
    expect(await b.execute(async () => 'slot free')).toBe('slot free')
    // The work failing after its disposed deadline's end is the dependency's failure, not the caller's.
    let failing: Promise<unknown> | undefined
    {
      using deadline = Deadline.after(30)
      failing = deadline.run(() => b.execute(() => sleep(60).then(fail))).catch((error: unknown) => error)
    }
    expect(await within(failing, 2_000, 'the failing call')).toMatchObject({ message: 'upstream down' })
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(1)
    b[Symbol.dispose]()
  })

  it('gives work a context of its own, which spreads: { signal, attempt }, nothing of the breaker', async () => {
    const { b } = breaker({ timeout: 30, volumeThreshold: 100 })
    let keys: string[] = []
    let self: unknown = 'unset'
    let passedOn: AbortSignal | undefined
    const helper = ({ signal }: { signal: AbortSignal; tag: string }) =>
      new Promise((_resolve, reject) => {
        passedOn = signal
        signal.addEventListener('abort', () => reject(signal.reason))
      })
    const outcome = await b
      .execute(function work(this: unknown, context) {
        self = this
        keys = Object.keys(context)
        return helper({ ...context, tag: 'spread' })
      })
      .catch((error: unknown) => error)
    expect(keys.sort()).toEqual(['attempt', 'signal'])
    expect(self).toBeUndefined()
    expect(passedOn?.aborted).toBe(true)
    expect(outcome).toBeInstanceOf(BreakerTimeoutError)
    b[Symbol.dispose]()
  })

  it('does not count a client abort, and goes to the fallback with reason "deadline"', async () => {
    const { b } = breaker({ volumeThreshold: 1, errorThresholdPercentage: 0 })
    using deadline = Deadline.after(5_000)
    let seen: FallbackContext | undefined
    const result = deadline.run(() =>
      b.execute(({ signal }) => new Promise<string>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))), {
        fallback: (context) => {
          seen = context
          return 'fallback'
        },
      }),
    )
    setTimeout(() => deadline.cancel(new ClientClosedError()), 10)
    expect(await result).toBe('fallback')
    expect(seen?.reason).toBe('deadline')
    expect(seen?.error).toBeInstanceOf(ClientClosedError)
    expect(b.state).toBe('closed')
    b[Symbol.dispose]()
  })

  // There is no per-call signal option: the caller gives up through its deadline,
  // which the deadline() middleware also cancels with ClientClosedError when the client leaves.
  it.each([
    {
      how: 'its deadline expires',
      kind: DeadlineExceededError,
      giveUp: () => {
        const deadline = Deadline.after(50)
        return { deadline, at: Promise.resolve(performance.now() + 50) }
      },
    },
    {
      how: 'its client goes away',
      kind: ClientClosedError,
      giveUp: () => {
        const deadline = Deadline.after(10_000)
        const at = new Promise<number>((resolve) =>
          setTimeout(() => {
            resolve(performance.now())
            deadline.cancel(new ClientClosedError())
          }, 50),
        )
        return { deadline, at }
      },
    },
  ])('when $how, the work signal aborts with the deadline reason and a real fetch upstream is cut promptly', async ({ kind, giveUp }) => {
    const upstream = await slowUpstream()
    const { b } = breaker({ volumeThreshold: 1, errorThresholdPercentage: 0 })
    try {
      // Loads fetch and opens its keep-alive connection before the clock starts.
      expect(await (await fetch(`${upstream.url}/fast`)).text()).toBe('fast')
      const { deadline, at } = giveUp()
      using _deadline = deadline
      let workSignal: AbortSignal | undefined
      let fetchError: unknown
      const error = await within(
        deadline.run(() =>
          b.execute(({ signal }) => {
            workSignal = signal
            return fetch(`${upstream.url}/slow`, { signal }).then(
              (response) => response.text(),
              (thrown: unknown) => {
                fetchError = thrown
                throw thrown
              },
            )
          }),
        ),
        3_000,
        'the call',
      ).catch((thrown: unknown) => thrown)
      // The upstream would answer after 5 s: its socket must close long before.
      await within(upstream.socketClosed, 2_000, 'the upstream socket closing').catch(() => undefined)
      expect(upstream.requestAt, 'the upstream received the request').toBeDefined()
      expect(upstream.closedAt, 'the upstream socket closed').toBeDefined()
      expect((upstream.closedAt as number) - (await at)).toBeLessThan(500)
      const reason = deadline.signal.reason
      expect(reason).toBeInstanceOf(kind)
      expect(error).toBe(reason)
      expect(workSignal?.aborted).toBe(true)
      expect(workSignal?.reason).toBe(reason)
      expect(fetchError).toBe(reason)
      // Not a dependency failure.
      expect(b.state).toBe('closed')
    } finally {
      b[Symbol.dispose]()
      await upstream.close()
    }
  })

  it('counts attempt timeouts as failures', async () => {
    const { b, registry } = breaker({ timeout: 20, volumeThreshold: 1, errorThresholdPercentage: 0 })
    await expect(b.execute(() => sleep(200))).rejects.toSatisfy(
      (error) => error instanceof BreakerTimeoutError && error instanceof TimeoutError,
    )
    expect(b.state).toBe('open')
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'timeout' })).toBe(1)
    b[Symbol.dispose]()
  })
})

describe('capacity', () => {
  it('frees a slot when the work settles, not when its timeout fires', async () => {
    const { b, registry } = breaker({ timeout: 20, capacity: 1, volumeThreshold: 100 })
    let release!: () => void
    const stubborn = new Promise<void>((resolve) => {
      release = resolve
    })
    // Work that ignores its signal: times out for the caller but keeps running.
    await expect(b.execute(() => stubborn)).rejects.toBeInstanceOf(BreakerTimeoutError)
    expect(b.running).toBe(1)
    const refused = await b.execute(async () => 'ran').catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(BrokenCircuitError)
    expect((refused as BrokenCircuitError).reason).toBe('capacity')
    expect((refused as BrokenCircuitError).code).toBe('BALLAST_BREAKER_CAPACITY')
    expect(await value(registry, 'ballast_breaker_concurrent_calls', { breaker: 'test' })).toBe(1)
    release()
    await sleep(0)
    expect(b.running).toBe(0)
    expect(await b.execute(async () => 'ran')).toBe('ran')
    expect(await value(registry, 'ballast_breaker_rejected_calls_total', { reason: 'capacity' })).toBe(1)
    b[Symbol.dispose]()
  })
})

describe('half-open', () => {
  async function trip(b: Breaker<unknown>): Promise<void> {
    await b.execute(fail).catch(() => undefined)
    expect(b.state).toBe('open')
  }

  it('lets exactly one trial through, rejects concurrent callers at once, closes on success', async () => {
    const { b, registry } = breaker<string>({ volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 50 })
    await trip(b)
    await sleep(80)
    expect(b.state).toBe('half-open')
    expect(b.retryAfter()).toBe(0)
    let finishTrial!: (value: string) => void
    let trialsRun = 0
    const trial = b.execute(() => {
      trialsRun++
      return new Promise<string>((resolve) => {
        finishTrial = resolve
      })
    })
    const started = performance.now()
    const others = await Promise.all(
      Array.from({ length: 5 }, () =>
        b.execute(
          async () => {
            trialsRun++
            return 'ran'
          },
          { fallback: (context) => `fallback:${context.reason}` },
        ),
      ),
    )
    const rejectedIn = performance.now() - started
    expect(others).toEqual(Array(5).fill('fallback:half-open'))
    expect(rejectedIn).toBeLessThan(500)
    expect(trialsRun).toBe(1)
    expect(b.retryAfter()).toBe(1)
    finishTrial('trial ok')
    expect(await trial).toBe('trial ok')
    expect(b.state).toBe('closed')
    expect(await value(registry, 'ballast_breaker_rejected_calls_total', { reason: 'half_open' })).toBe(5)
    b[Symbol.dispose]()
  })

  it('retryAfter() follows the monotonic clock: a wall clock stepped back an hour changes nothing', async () => {
    const { b } = breaker({ volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 5_000 })
    await b.execute(fail).catch(() => undefined)
    expect(b.state).toBe('open')
    const stepped = vi.spyOn(Date, 'now').mockReturnValue(Date.now() - 3_600_000)
    try {
      expect(b.retryAfter()).toBeLessThanOrEqual(5)
      await expect(b.execute(async () => 'refused')).rejects.toMatchObject({ headers: { 'retry-after': expect.stringMatching(/^[1-5]$/) } })
    } finally {
      stepped.mockRestore()
    }
    b[Symbol.dispose]()
  })

  it('closing starts a new window: the failures that opened the circuit cannot reopen it with one more', async () => {
    const { b, registry } = breaker({ volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeout: 100, rollingCountTimeout: 60_000 })
    for (let i = 0; i < 5; i++) await b.execute(fail).catch(() => undefined)
    expect(b.state).toBe('open')
    for (let i = 0; i < 10; i++) await b.execute(async () => 'refused').catch(() => undefined)
    await expect.poll(() => b.state, { timeout: 2_000, interval: 5 }).toBe('half-open')
    expect(await b.execute(async () => 'trial')).toBe('trial')
    expect(b.state).toBe('closed')
    await b.execute(fail).catch(() => undefined)
    expect(b.state).toBe('closed')
    expect(await value(registry, 'ballast_breaker_failure_ratio', {})).toBe(1)
    b[Symbol.dispose]()
  })

  it('reopens for resetTimeout on a failed trial', async () => {
    // The state machine alone: fake timers (opossum's reset timer, Date.now) make the boundaries exact.
    vi.useFakeTimers()
    try {
      const { b, registry } = breaker({ volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 2_500 })
      const transitions: string[] = []
      b.onStateChange(({ to }) => transitions.push(to))
      let runs = 0
      const counted = async () => {
        runs++
        return 'ran'
      }
      await trip(b)
      expect(b.retryAfter()).toBe(3)
      await vi.advanceTimersByTimeAsync(2_500)
      expect(b.state).toBe('half-open')
      // The trial runs and fails: open again, for a whole resetTimeout from now.
      await expect(
        b.execute(() => {
          runs++
          return fail()
        }),
      ).rejects.toThrow('upstream down')
      expect(runs).toBe(1)
      expect(b.state).toBe('open')
      expect(b.retryAfter()).toBe(3)
      const refused = await b.execute(counted).catch((error: unknown) => error)
      expect(refused).toBeInstanceOf(BrokenCircuitError)
      expect(refused).toMatchObject({ reason: 'open', headers: { 'retry-after': '3' } })
      await vi.advanceTimersByTimeAsync(2_499)
      expect(b.state).toBe('open')
      expect(b.retryAfter()).toBe(1)
      expect(await b.execute(counted, { fallback: ({ reason }) => `fallback:${reason}` })).toBe('fallback:open')
      expect(runs).toBe(1)
      await vi.advanceTimersByTimeAsync(1)
      expect(b.state).toBe('half-open')
      expect(await b.execute(counted)).toBe('ran')
      expect(runs).toBe(2)
      expect(b.state).toBe('closed')
      expect(transitions).toEqual(['open', 'half-open', 'open', 'half-open', 'closed'])
      expect(await value(registry, 'ballast_breaker_transitions_total', { state: 'open' })).toBe(2)
      expect(await value(registry, 'ballast_breaker_rejected_calls_total', { reason: 'open' })).toBe(2)
      b[Symbol.dispose]()
    } finally {
      vi.useRealTimers()
    }
  })

  it('hands the trial back when the trial call is cancelled by its caller', async () => {
    const { b } = breaker({ volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 30 })
    await trip(b)
    await sleep(50)
    expect(b.state).toBe('half-open')
    using deadline = Deadline.after(20)
    await deadline
      .run(() =>
        b.execute(({ signal }) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))),
      )
      .catch(() => undefined)
    expect(b.state).toBe('half-open')
    expect(await b.execute(async () => 'second trial')).toBe('second trial')
    expect(b.state).toBe('closed')
    b[Symbol.dispose]()
  })
})

describe('fallback', () => {
  it('receives reason, error, signal and retryAfter; wrap passes the arguments', async () => {
    const { b } = breaker({ volumeThreshold: 100 })
    const get = b.wrap(
      async (_context, id: string) => fail().then(() => ({ id, reason: 'none', message: '', aborted: false, retryAfter: -1 })),
      {
        fallback: (context, id) => ({
          id,
          reason: context.reason,
          message: (context.error as Error).message,
          aborted: context.signal.aborted,
          retryAfter: context.retryAfter,
        }),
      },
    )
    expect(await get('42')).toEqual({ id: '42', reason: 'failure', message: 'upstream down', aborted: false, retryAfter: 0 })
    b[Symbol.dispose]()
  })

  it.each(['failure', 'open'] as const)(
    'a "%s" fallback gets the caller deadline as its signal: waiting on it ends with the deadline reason',
    async (expected) => {
      const { b } = breaker<unknown>({ volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 60_000 })
      if (expected === 'open') await b.execute(fail).catch(() => undefined)
      expect(b.state).toBe(expected === 'open' ? 'open' : 'closed')
      using deadline = Deadline.after(30)
      let seen: { reason: string; abortedAtStart: boolean } | undefined
      const result = await within(
        deadline.run(() =>
          b.execute(fail, {
            fallback: ({ reason, signal }) => {
              seen = { reason, abortedAtStart: signal.aborted }
              // A fallback doing I/O: it ends when its signal aborts.
              return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }))
            },
          }),
        ),
        2_000,
        'the fallback',
      )
      // The fallback started before the deadline, and its wait was ended by it.
      expect(seen).toEqual({ reason: expected, abortedAtStart: false })
      expect(result).toBeInstanceOf(DeadlineExceededError)
      expect(result).toBe(deadline.signal.reason)
      b[Symbol.dispose]()
    },
  )

  it('fallbacks outside any deadline each get a signal of their own: 30 waiting at once raise no leak warning, and a listener one leaves stays with it', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    const { b } = breaker<unknown>({ volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 60_000 })
    await b.execute(fail).catch(() => undefined)
    expect(b.state).toBe('open')
    // A cache read that gives up when its signal aborts, and stops listening once it has its answer.
    const fallback = ({ signal }: FallbackContext) =>
      new Promise((resolve, reject) => {
        const onAbort = () => reject(signal.reason)
        signal.addEventListener('abort', onAbort, { once: true })
        setTimeout(() => {
          signal.removeEventListener('abort', onAbort)
          resolve('cached')
        }, 20)
      })
    const results = await Promise.all(Array.from({ length: 30 }, () => b.execute(fail, { fallback })))
    await sleep(5)
    process.off('warning', onWarning)
    expect(results).toEqual(Array.from({ length: 30 }, () => 'cached'))
    expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([])
    // A fallback that never removes its listener: nothing piles up on the next fallback's signal.
    const signals: AbortSignal[] = []
    const careless = ({ signal }: FallbackContext) => {
      signal.addEventListener('abort', () => {})
      signals.push(signal)
      return 'cached'
    }
    for (let i = 0; i < 20; i++) await b.execute(fail, { fallback: careless })
    expect(new Set(signals).size).toBe(20)
    expect(signals.map((signal) => getEventListeners(signal, 'abort').length)).toEqual(Array.from({ length: 20 }, () => 1))
    expect(signals.some((signal) => signal.aborted)).toBe(false)
    b[Symbol.dispose]()
  })

  it('checks the fallback result type against the work result type', async () => {
    const { b } = breaker({ volumeThreshold: 100 })
    // @ts-expect-error a fallback must produce what the work produces
    const typed: Promise<number> = b.execute(async () => 1, { fallback: () => 'not a number' })
    expect(await typed).toBe(1)
    const withDefault = new Breaker({ name: 'typed', registry: new Registry(), fallback: () => null })
    const maybe: number | null = await withDefault.execute(fail)
    expect(maybe).toBeNull()
    b[Symbol.dispose]()
    withDefault[Symbol.dispose]()
  })

  it('a throwing fallback gives its error with the original as cause, and is counted', async () => {
    const { b, registry } = breaker({ volumeThreshold: 100, fallback: () => 'default' })
    const original = await b
      .execute(fail, {
        fallback: () => {
          throw new Error('cache empty')
        },
      })
      .catch((error: unknown) => error)
    expect((original as Error).message).toBe('cache empty')
    expect(((original as Error).cause as Error).message).toBe('upstream down')
    expect(await b.execute(fail)).toBe('default')
    expect(await value(registry, 'ballast_breaker_fallbacks_total', { result: 'failure' })).toBe(1)
    expect(await value(registry, 'ballast_breaker_fallbacks_total', { result: 'success' })).toBe(1)
    b[Symbol.dispose]()
  })

  it('rethrows errors isFailure rejects, without fallback or counting', async () => {
    const { b, registry } = breaker({
      volumeThreshold: 1,
      errorThresholdPercentage: 0,
      isFailure: (error) => (error as Error).message !== 'not found',
      fallback: () => 'fb',
    })
    await expect(b.execute(() => Promise.reject(new Error('not found')))).rejects.toThrow('not found')
    expect(b.state).toBe('closed')
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'ignored' })).toBe(1)
    b[Symbol.dispose]()
  })
  it('an isFailure that throws fails the call with its error: counted, fallback applies, no unhandled rejection', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const bug = new Error('isFailure bug')
      const isFailure = () => {
        throw bug
      }
      // No attempt timer to end the call: before the fix it never settled.
      const { b, registry } = breaker({ timeout: false, volumeThreshold: 1, errorThresholdPercentage: 1, isFailure })
      const error = await b.execute(fail).catch((e: unknown) => e)
      expect(error).toBe(bug)
      expect(((error as Error).cause as Error).message).toBe('upstream down')
      expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(1)
      expect(b.state).toBe('open')
      b[Symbol.dispose]()

      const reasons: unknown[] = []
      const withFallback = breaker<string>({
        timeout: 500,
        volumeThreshold: 100,
        isFailure: () => {
          throw 'not an error'
        },
        fallback: ({ reason, error: seen }) => {
          reasons.push(reason, seen)
          return 'fallback'
        },
      })
      expect(await withFallback.b.execute(fail)).toBe('fallback')
      expect(reasons[0]).toBe('failure')
      expect((reasons[1] as Error).message).toBe("isFailure threw 'not an error'")
      expect(((reasons[1] as Error).cause as Error).message).toBe('upstream down')
      expect(await value(withFallback.registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(1)
      withFallback.b[Symbol.dispose]()
      await new Promise((resolve) => setImmediate(resolve))
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})

describe('retry', () => {
  it('retries while closed, each attempt counted', async () => {
    const { b, registry } = breaker({ volumeThreshold: 100, retry: { attempts: 2, delay: 5 } })
    const attempts: number[] = []
    const result = await b.execute(async ({ attempt }) => {
      attempts.push(attempt)
      if (attempt < 2) throw new Error('flaky')
      return 'third time'
    })
    expect(result).toBe('third time')
    expect(attempts).toEqual([0, 1, 2])
    expect(await value(registry, 'ballast_breaker_retries_total', { breaker: 'test' })).toBe(2)
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(2)
    b[Symbol.dispose]()
  })

  it('stops retrying once the breaker opens', async () => {
    const { b } = breaker({ volumeThreshold: 1, errorThresholdPercentage: 0, retry: { attempts: 3 } })
    let runs = 0
    await expect(
      b.execute(() => {
        runs++
        return fail()
      }),
    ).rejects.toThrow('upstream down')
    expect(runs).toBe(1)
    b[Symbol.dispose]()
  })

  it('does not retry when the deadline leaves no budget for the delay', async () => {
    const { b } = breaker({ volumeThreshold: 100, retry: { attempts: 3, delay: 200 } })
    using deadline = Deadline.after(100)
    let runs = 0
    await expect(
      deadline.run(() =>
        b.execute(() => {
          runs++
          return fail()
        }),
      ),
    ).rejects.toThrow('upstream down')
    expect(runs).toBe(1)
    b[Symbol.dispose]()
  })
})

describe('errors', () => {
  it('BrokenCircuitError carries 503 and retry-after', async () => {
    const { b } = breaker({ volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 7_000 })
    await b.execute(fail).catch(() => undefined)
    const error = await b.execute(async () => 'x').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(BrokenCircuitError)
    expect(error).toMatchObject({
      code: 'BALLAST_BREAKER_OPEN',
      status: 503,
      statusCode: 503,
      reason: 'open',
      headers: { 'retry-after': '7' },
    })
    expect(isBallastError(error)).toBe(true)
    b[Symbol.dispose]()
  })

  it('BreakerTimeoutError is a p-timeout TimeoutError and a ballast error, across copies', () => {
    const error = new BreakerTimeoutError('x', 800)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error).toMatchObject({ name: 'BreakerTimeoutError', code: 'BALLAST_BREAKER_TIMEOUT', status: 504, timeout: 800 })
    expect(isBallastError(error)).toBe(true)
    // A second copy of the package: a distinct class with the same name and brand.
    const Copy = { BreakerTimeoutError: class BreakerTimeoutError extends TimeoutError {} }.BreakerTimeoutError
    Object.defineProperty(Copy.prototype, Symbol.for('ballast.error'), { value: true })
    const fromCopy = new Copy('copy')
    ;(fromCopy as { name: string }).name = 'BreakerTimeoutError'
    expect(fromCopy).toBeInstanceOf(BreakerTimeoutError)
    expect(new TimeoutError('plain')).not.toBeInstanceOf(BreakerTimeoutError)
  })
})

describe('metrics', () => {
  it('count every call exactly, also after the registry is reset', async () => {
    const { b, registry } = breaker({ volumeThreshold: 1_000 })
    for (let i = 0; i < 7; i++) await b.execute(async () => i)
    for (let i = 0; i < 3; i++) await b.execute(fail).catch(() => undefined)
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'success' })).toBe(7)
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'failure' })).toBe(3)
    expect(await value(registry, 'ballast_breaker_call_duration_seconds', { outcome: 'success' })).toBeUndefined()
    const histogram = await registry.getSingleMetric('ballast_breaker_call_duration_seconds')?.get()
    const count = histogram?.values.find(
      (v) => (v as { metricName?: string }).metricName?.endsWith('_count') && v.labels.outcome === 'success',
    )
    expect(count?.value).toBe(7)
    registry.resetMetrics()
    await b.execute(async () => 1)
    await b.execute(async () => 2)
    expect(await value(registry, 'ballast_breaker_calls_total', { outcome: 'success' })).toBe(2)
    b[Symbol.dispose]()
  })

  it('reads the state gauge at scrape time', async () => {
    const { b, registry } = breaker({ volumeThreshold: 1, errorThresholdPercentage: 0 })
    expect(await value(registry, 'ballast_breaker_state', { state: 'closed' })).toBe(1)
    await b.execute(fail).catch(() => undefined)
    expect(await value(registry, 'ballast_breaker_state', { state: 'open' })).toBe(1)
    expect(await value(registry, 'ballast_breaker_state', { state: 'closed' })).toBe(0)
    expect(await value(registry, 'ballast_breaker_failure_ratio', { breaker: 'test' })).toBe(1)
    b[Symbol.dispose]()
  })
})

describe('timers', () => {
  it('times concurrent calls out each at its own budget, and an idle breaker holds no active timer', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
    const baseline = timers()
    const { b } = breaker({ timeout: 50, volumeThreshold: 1_000 })
    const started = performance.now()
    const hang = ({ signal }: { signal: AbortSignal }) =>
      new Promise<number>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    const ends: Promise<number>[] = []
    for (let i = 0; i < 4; i++) {
      ends.push(b.execute(hang).catch(() => performance.now() - started))
      await sleep(15)
    }
    const elapsed = await Promise.all(ends)
    elapsed.forEach((ms, i) => {
      // Started about 15 ms apart: each ends at its own start + 50 ms, never before.
      expect(ms).toBeGreaterThanOrEqual(i * 15 + 49)
      expect(ms).toBeLessThan(i * 15 + 50 + 500)
    })
    expect(elapsed[3] as number).toBeGreaterThan(elapsed[0] as number)
    // No timer of this breaker left active (others may have ended meanwhile).
    expect(timers()).toBeLessThanOrEqual(baseline)
    expect(await b.execute(async () => 'still works')).toBe('still works')
    expect(timers()).toBeLessThanOrEqual(baseline)
    b[Symbol.dispose]()
  })
  it("does not time out an attempt whose answer came in while the caller's own loop was busy past its budget", async () => {
    // The upstream shares this process: it answers, then holds the loop 4× the budget, as
    // a busy request handler of an overloaded caller would. The answer waits in the socket.
    const server = createServer((_req, res) => {
      res.end('ok')
      const until = performance.now() + 200
      while (performance.now() < until) {}
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const { b, registry } = breaker({ timeout: 50, volumeThreshold: 1_000 })
    const took = performance.now()
    const answer = await b.execute(async ({ signal }) => (await fetch(url, { signal })).text())
    expect(performance.now() - took).toBeGreaterThanOrEqual(200)
    expect(answer).toBe('ok')
    expect(await value(registry, 'ballast_breaker_calls_total', { breaker: 'test', outcome: 'timeout' })).toBe(0)
    expect(await value(registry, 'ballast_breaker_calls_total', { breaker: 'test', outcome: 'success' })).toBe(1)
    // A dependency that really is slow still times out at the budget.
    const slow = await slowUpstream()
    await expect(b.execute(async ({ signal }) => (await fetch(`${slow.url}/slow`, { signal })).text())).rejects.toBeInstanceOf(
      BreakerTimeoutError,
    )
    await slow.close()
    server.close()
    await once(server, 'close')
    b[Symbol.dispose]()
  })
})

describe('timers of calls started by a timeout', () => {
  it("a call started from an attempt's abort listener at its timeout is timed, and dispose clears its timer", async () => {
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
    const baseline = timers()
    const { b } = breaker({ timeout: 60, volumeThreshold: 1_000 })
    let hedge: Promise<unknown> | undefined
    const hang = ({ signal }: CallContext) =>
      new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    const first = b
      .execute(({ signal }) => {
        // A hedge on timeout: a second call through the same breaker, from the abort listener.
        signal.addEventListener('abort', () => {
          hedge = b.execute(hang).catch((error: unknown) => error)
        })
        return hang({ signal, attempt: 0 })
      })
      .catch((error: unknown) => error)
    expect(await first).toBeInstanceOf(BreakerTimeoutError)
    // Disposed while the hedge runs: no timer of the breaker's is left to hold the process.
    b[Symbol.dispose]()
    expect(await within(hedge as Promise<unknown>, 2_000, 'the hedge')).toMatchObject({ code: 'BALLAST_BREAKER_DISPOSED' })
    expect(timers()).toBeLessThanOrEqual(baseline)
  })
})

describe('dispose', () => {
  it('clears every timer, cancels in-flight work and removes the series', async () => {
    const baseline = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const registry = new Registry()
    const keep = new Breaker({ name: 'keep', registry })
    const open = new Breaker({
      name: 'gone',
      registry,
      volumeThreshold: 1,
      errorThresholdPercentage: 0,
      retry: { attempts: 1, delay: 60_000 },
    })
    const inflight = new Breaker({ name: 'busy', registry, timeout: 60_000 })
    await open.execute(fail).catch(() => undefined)
    expect(open.state).toBe('open')
    let abortedWith: unknown
    const pending = inflight.execute(
      ({ signal }) =>
        new Promise((_resolve, reject) =>
          signal.addEventListener('abort', () => {
            abortedWith = signal.reason
            reject(signal.reason)
          }),
        ),
    )
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBeGreaterThan(baseline)
    open[Symbol.dispose]()
    inflight[Symbol.dispose]()
    keep[Symbol.dispose]()
    await expect(pending).rejects.toMatchObject({ code: 'BALLAST_BREAKER_DISPOSED' })
    expect((abortedWith as { code?: string }).code).toBe('BALLAST_BREAKER_DISPOSED')
    expect(open.state).toBe('disabled')
    await expect(open.execute(async () => 1)).rejects.toMatchObject({ code: 'BALLAST_BREAKER_DISPOSED' })
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(baseline)
    const text = await registry.metrics()
    expect(text).not.toMatch(/breaker="(keep|gone|busy)"/)
  })

  it('a call waiting out its retry pause when the breaker is disposed rejects with BALLAST_BREAKER_DISPOSED, as a running one does', async () => {
    const b = new Breaker({ name: 'pausing', registry: new Registry(), retry: { attempts: 1, delay: 60_000 } })
    let attempts = 0
    const fallback = vi.fn(() => 'cached')
    const pending = b.execute(
      async () => {
        attempts++
        throw new Error('down')
      },
      { fallback },
    )
    // The attempt failed and the call now waits out its pause: no attempt running.
    await vi.waitFor(() => expect([attempts, b.running]).toEqual([1, 0]))
    await new Promise((resolve) => setImmediate(resolve))
    b[Symbol.dispose]()
    await expect(pending).rejects.toMatchObject({ code: 'BALLAST_BREAKER_DISPOSED' })
    expect(attempts).toBe(1)
    expect(fallback).not.toHaveBeenCalled()
  })
})
