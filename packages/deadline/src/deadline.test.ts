import { getEventListeners, getMaxListeners, setMaxListeners } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { isBallastError } from '@ballast/core'
import fc from 'fast-check'
import { TimeoutError } from 'p-timeout'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Deadline, withDeadline, withoutDeadline } from './deadline.js'
import { ClientClosedError, DeadlineCancelledError, DeadlineExceededError, rootDeadlineSource } from './errors.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length

afterEach(() => {
  vi.restoreAllMocks()
})

describe('Deadline', () => {
  it('aborts at expiry with a local DeadlineExceededError and clears its timer', async () => {
    const before = timers()
    const deadline = Deadline.after(20)
    expect(timers()).toBe(before + 1)
    expect(deadline.expired).toBe(false)
    expect(deadline.remaining()).toBeGreaterThan(0)
    await sleep(40)
    expect(deadline.expired).toBe(true)
    expect(deadline.remaining()).toBe(0)
    const reason = deadline.signal.reason as DeadlineExceededError
    expect(reason).toBeInstanceOf(DeadlineExceededError)
    expect(reason).toBeInstanceOf(TimeoutError)
    expect(reason.code).toBe('BALLAST_DEADLINE_EXCEEDED')
    expect(reason.status).toBe(504)
    expect(reason.source).toBe('local')
    expect(reason.name).toBe('DeadlineExceededError')
    expect(isBallastError(reason)).toBe(true)
    expect(timers()).toBe(before)
  })

  it('treats <= 0 as expired at once and > 2^31-1 as no timer', () => {
    const before = timers()
    expect(Deadline.after(0).expired).toBe(true)
    expect(Deadline.after(-5).signal.aborted).toBe(true)
    const far = Deadline.after(2 ** 31)
    expect(timers()).toBe(before)
    expect(far.expired).toBe(false)
    expect(far.remaining()).toBeGreaterThan(2 ** 31 - 10)
    const never = Deadline.after(Number.POSITIVE_INFINITY)
    expect(never.remaining()).toBe(Number.POSITIVE_INFINITY)
    expect(timers()).toBe(before)
  })

  it('rejects a non-number budget with a TypeError naming the value', () => {
    expect(() => Deadline.after(Number.NaN)).toThrow(/Deadline.after: "ms" must be a number of milliseconds, got NaN/)
    expect(() => Deadline.after('5' as unknown as number)).toThrow(TypeError)
    expect(() => Deadline.after(10).child(undefined as unknown as number)).toThrow(/Deadline.child/)
  })

  it('disposal clears the timer without aborting the signal', () => {
    const before = timers()
    const deadline = Deadline.after(10_000)
    const signal = deadline.signal
    deadline[Symbol.dispose]()
    expect(timers()).toBe(before)
    expect(signal.aborted).toBe(false)
  })

  it('a child is never later than its parent and arms no timer when clipped', () => {
    const parent = Deadline.after(100)
    const before = timers()
    const clipped = parent.child(10_000)
    expect(timers()).toBe(before)
    const parentLeft = parent.remaining()
    expect(clipped.remaining()).toBeLessThanOrEqual(parentLeft)
    // Deadlines of one delay share a Node timer: 13 ms is a delay no other live deadline here has.
    const shorter = parent.child(13)
    expect(timers()).toBe(before + 1)
    expect(shorter.remaining()).toBeLessThanOrEqual(13)
    parent[Symbol.dispose]()
    shorter[Symbol.dispose]()
    expect(timers()).toBe(before - 1)
  })

  it('tells local, inherited, parent, cancelled and client-closed reasons apart', async () => {
    const local = Deadline.after(5)
    const inherited = Deadline.after(5, { inherited: true })
    const parent = Deadline.after(5)
    const child = parent.child(1_000)
    const grandchild = child.child(1_000)
    await sleep(20)
    expect((local.signal.reason as DeadlineExceededError).source).toBe('local')
    expect((inherited.signal.reason as DeadlineExceededError).source).toBe('inherited')
    const fromParent = child.signal.reason as DeadlineExceededError
    expect(fromParent).toBeInstanceOf(DeadlineExceededError)
    expect(fromParent.source).toBe('parent')
    expect(fromParent.cause).toBe(parent.signal.reason)
    expect(rootDeadlineSource(grandchild.signal.reason as DeadlineExceededError)).toBe('local')
    expect(rootDeadlineSource(inherited.signal.reason as DeadlineExceededError)).toBe('inherited')

    const cancelled = Deadline.after(1_000)
    const cancelledChild = cancelled.child(500)
    const why = new Error('stop')
    cancelled.cancel(why)
    expect(cancelled.signal.reason).toBe(why)
    expect(cancelledChild.signal.reason).toBeInstanceOf(DeadlineCancelledError)
    expect((cancelledChild.signal.reason as Error).cause).toBe(why)
    expect(cancelledChild.expired).toBe(true)

    const request = Deadline.after(1_000)
    const call = request.child(100)
    const closed = new ClientClosedError()
    request.cancel(closed)
    expect(call.signal.reason).toBeInstanceOf(ClientClosedError)
    expect((call.signal.reason as Error).cause).toBe(closed)
    expect((call.signal.reason as ClientClosedError).status).toBe(499)

    const plain = Deadline.after(1_000)
    plain.cancel()
    expect(plain.signal.reason).toBeInstanceOf(DeadlineCancelledError)
    expect(plain.remaining()).toBe(0)
  })

  it('a child of an aborted parent is born aborted, a child of a disposed parent stands alone', () => {
    const parent = Deadline.after(1_000)
    parent.cancel()
    expect(parent.child(100).expired).toBe(true)
    const disposed = Deadline.after(50)
    disposed[Symbol.dispose]()
    const orphan = disposed.child(20)
    expect(orphan.expired).toBe(false)
    orphan[Symbol.dispose]()
  })

  it('a child of a disposed parent still ends no later than the parent would have', async () => {
    const parent = Deadline.after(30)
    parent[Symbol.dispose]()
    const child = parent.child(5_000)
    expect(child.remaining()).toBeLessThanOrEqual(30)
    const reason = await new Promise((resolve) => child.signal.addEventListener('abort', () => resolve(child.signal.reason)))
    expect(reason).toBeInstanceOf(DeadlineExceededError)
    expect(child.expired).toBe(true)
  })

  it('a disposed deadline whose time is up reads expired, without aborting its signal', async () => {
    const deadline = Deadline.after(10)
    const signal = deadline.signal
    deadline[Symbol.dispose]()
    expect(deadline.expired).toBe(false)
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(deadline.remaining()).toBe(0)
    expect(deadline.expired).toBe(true)
    expect(signal.aborted).toBe(false)
  })

  it('reason: undefined while running, the abort reason once aborted, a DeadlineExceededError once a disposed one is over', async () => {
    const running = Deadline.after(1_000)
    expect(running.reason).toBeUndefined()
    const why = new Error('stop')
    running.cancel(why)
    expect(running.reason).toBe(why)

    const inherited = Deadline.after(10, { inherited: true })
    inherited[Symbol.dispose]()
    expect(inherited.reason).toBeUndefined()
    await sleep(30)
    const reason = inherited.reason
    expect(reason).toBeInstanceOf(DeadlineExceededError)
    expect((reason as DeadlineExceededError).source).toBe('inherited')
    expect(inherited.reason).toBe(reason)
    expect(inherited.signal.aborted).toBe(false)

    // A child of a disposed parent reports the parent's end as the limit that fired.
    const parent = Deadline.after(10)
    parent[Symbol.dispose]()
    const child = parent.child(5_000)
    child[Symbol.dispose]()
    await sleep(30)
    expect((child.reason as DeadlineExceededError).source).toBe('parent')
    // So does a child disposed while linked to a parent that ends first, as a live sibling would.
    const linkedParent = Deadline.after(10)
    const live = linkedParent.child(5_000)
    const disposedChild = linkedParent.child(5_000)
    disposedChild[Symbol.dispose]()
    await sleep(30)
    expect((live.reason as DeadlineExceededError).source).toBe('parent')
    expect((disposedChild.reason as DeadlineExceededError).source).toBe('parent')
    expect((disposedChild.reason as DeadlineExceededError).cause).toBeInstanceOf(DeadlineExceededError)
    // Once over, it stays over for the same reason, as Go's ctx.Err().
    child.cancel()
    expect(child.reason).toBeInstanceOf(DeadlineExceededError)
    expect(child.signal.aborted).toBe(false)
  })

  it('a child of a disposed parent is cancelled with disposed: true, and so are its own children', () => {
    const parent = Deadline.after(1_000)
    const child = parent.child(500)
    const grandchild = child.child(100)
    parent[Symbol.dispose]()
    expect(child.reason).toBeInstanceOf(DeadlineCancelledError)
    expect((child.reason as DeadlineCancelledError).disposed).toBe(true)
    expect((grandchild.reason as DeadlineCancelledError).disposed).toBe(true)
    using own = Deadline.after(1_000)
    own.cancel()
    expect((own.reason as DeadlineCancelledError).disposed).toBe(false)
  })

  it('refuses options that are not an object with a TypeError naming them', () => {
    expect(() => Deadline.after(50, { signl: new AbortController().signal } as never)).toThrow(
      /Deadline\.after: unknown option "signl" \(did you mean "signal"\?\)/,
    )
    expect(() => Deadline.after(50).child(10, { inherted: true } as never)).toThrow(/Deadline\.child: unknown option "inherted"/)
    expect(() => Deadline.after(50).child(10, { signal: 'x' as never })).toThrow(
      /Deadline\.child: option "signal" must be an AbortSignal, got 'x'/,
    )
    expect(() => withDeadline(50, async () => {}, { sinal: new AbortController().signal } as never)).toThrow(
      /withDeadline: unknown option "sinal" \(did you mean "signal"\?\)/,
    )
    expect(() => withDeadline(50, async () => {}, { inherited: true } as never)).toThrow(/withDeadline: unknown option "inherited"/)
    expect(() => withDeadline(50, async () => {}, 5 as never)).toThrow(/withDeadline: "options" must be an object, got 5/)
    expect(() => withDeadline(50, async () => {}, [] as never)).toThrow(/withDeadline: "options" must be an object, got \[\]/)
    expect(() => withDeadline(50, async () => {}, { inherited: 'x' } as never)).toThrow(/withDeadline: unknown option "inherited"/)
    // An option given as undefined is absent (a config value passed through), in the types too.
    const config: { signal?: AbortSignal; inherited?: boolean } = {}
    using passed = Deadline.after(1_000, { signal: config.signal, inherited: config.inherited })
    expect(passed.child(10, { inherited: undefined }).remaining()).toBeLessThanOrEqual(10)
    expect(new DeadlineExceededError(undefined, { source: undefined, timeout: undefined }).source).toBe('local')
    expect(() => Deadline.after(10, null as never)).toThrow(/Deadline\.after: "options" must be an object, got null/)
    expect(() => Deadline.after(10).child(5, 'x' as never)).toThrow(TypeError)
  })

  it('refuses a bad signal, inherited flag, onAbort listener or withDeadline work at the call, naming it and the value', async () => {
    for (const [signal, shown] of [
      [5, '5'],
      [{}, '{}'],
      [null, 'null'],
      ['x', "'x'"],
    ] as const) {
      expect(() => Deadline.after(10, { signal: signal as never })).toThrow(
        new TypeError(`Deadline.after: option "signal" must be an AbortSignal, got ${shown}`),
      )
    }
    expect(() => Deadline.after(10, { inherited: 'yes' as never })).toThrow(
      /Deadline\.after: option "inherited" must be a boolean, got 'yes'/,
    )
    expect(() => Deadline.after(10).child(5, { inherited: 1 as never })).toThrow(
      /Deadline\.child: option "inherited" must be a boolean, got 1/,
    )
    using deadline = Deadline.after(10)
    expect(() => deadline.onAbort('x' as never)).toThrow(/Deadline\.onAbort: "listener" must be a function, got 'x'/)
    expect(() => withDeadline(100, 'x' as never)).toThrow(/withDeadline: "work" must be a function, got 'x'/)
    // A signal of another shape that behaves like one still links.
    const controller = new AbortController()
    using linked = Deadline.after(1_000, { signal: controller.signal })
    controller.abort(new Error('stop'))
    expect(linked.signal.aborted).toBe(true)
  })

  it("names the outside signal, not a parent, when that signal's abort cancels a deadline", () => {
    const stop = new Error('stop')
    const controller = new AbortController()
    using linked = Deadline.after(1_000, { signal: controller.signal })
    const child = linked.child(500)
    controller.abort(stop)
    expect(linked.signal.reason).toBeInstanceOf(DeadlineCancelledError)
    expect(linked.signal.reason).toMatchObject({ message: 'the signal the deadline follows was aborted', cause: stop })
    expect(child.signal.reason).toMatchObject({ message: 'the parent deadline was cancelled', cause: linked.signal.reason })
    using late = Deadline.after(1_000, { signal: AbortSignal.abort(stop) })
    expect(late.signal.reason).toMatchObject({ message: 'the signal the deadline follows was aborted', cause: stop })
  })

  it('disposing a parent cancels children still linked to it', () => {
    const parent = Deadline.after(1_000)
    const child = parent.child(500)
    parent[Symbol.dispose]()
    expect(child.signal.reason).toBeInstanceOf(DeadlineCancelledError)
    const parent2 = Deadline.after(1_000)
    const done = parent2.child(500)
    done[Symbol.dispose]()
    parent2[Symbol.dispose]()
    expect(done.signal.aborted).toBe(false)
  })

  it('links to an outside signal with one listener, removed with the last deadline', () => {
    const controller = new AbortController()
    const spyAdd = vi.spyOn(controller.signal, 'addEventListener')
    const spyRemove = vi.spyOn(controller.signal, 'removeEventListener')
    const deadlines = Array.from({ length: 50 }, () => Deadline.after(1_000, { signal: controller.signal }))
    expect(spyAdd).toHaveBeenCalledTimes(1)
    for (const deadline of deadlines.slice(1)) deadline[Symbol.dispose]()
    expect(spyRemove).not.toHaveBeenCalled()
    const why = new Error('shutdown')
    controller.abort(why)
    const first = deadlines[0] as Deadline
    expect(first.signal.reason).toBeInstanceOf(DeadlineCancelledError)
    expect((first.signal.reason as Error).cause).toBe(why)
    expect((deadlines[1] as Deadline).signal.aborted).toBe(false)
    const late = Deadline.after(1_000, { signal: controller.signal })
    expect(late.expired).toBe(true)
  })

  it('run() makes it current for everything awaited inside, and races see it too', async () => {
    const deadline = Deadline.after(1_000)
    expect(Deadline.current()).toBeUndefined()
    await deadline.run(async () => {
      await sleep(1)
      expect(Deadline.current()).toBe(deadline)
      await withDeadline(50, async () => {
        const inner = Deadline.current()
        expect(inner).not.toBe(deadline)
        expect(inner?.remaining()).toBeLessThanOrEqual(50)
      })
      expect(Deadline.current()).toBe(deadline)
    })
    expect(Deadline.current()).toBeUndefined()
    deadline[Symbol.dispose]()
  })

  it('shares the current deadline through a Symbol.for store on globalThis', () => {
    const store = (globalThis as Record<symbol, { getStore(): unknown }>)[Symbol.for('ballast.deadline.storage')]
    const deadline = Deadline.after(1_000)
    deadline.run(() => expect(store?.getStore()).toBe(deadline))
    deadline[Symbol.dispose]()
  })
})

/**
 * An EventTarget's listener limit. Node before 22.13 throws reading a limit of 0
 * through getMaxListeners() (it tests the value for truth), so that one is read
 * where Node keeps it.
 */
function maxListeners(target: EventTarget): unknown {
  try {
    return getMaxListeners(target)
  } catch {
    const key = Object.getOwnPropertySymbols(target).find((symbol) => symbol.description === 'events.maxEventTargetListeners')
    return key === undefined ? undefined : (target as unknown as Record<symbol, unknown>)[key]
  }
}

describe('race and withDeadline', () => {
  it('settles like the work on the happy path, building no error and leaving no timer', async () => {
    const before = timers()
    const capture = vi.spyOn(Error, 'captureStackTrace')
    for (let i = 0; i < 100; i++) expect(await withDeadline(1_000, async (signal) => (signal.aborted ? -1 : i))).toBe(i)
    const deadline = Deadline.after(1_000)
    expect(await deadline.race(Promise.resolve('x'))).toBe('x')
    deadline[Symbol.dispose]()
    expect(capture).not.toHaveBeenCalled()
    expect(timers()).toBe(before)
  })

  it('settles with a plain value that work returns instead of a promise, and leaves no timer', async () => {
    const before = timers()
    const work = (() => 5) as unknown as () => Promise<number>
    for (let i = 0; i < 3; i++) expect(await withDeadline(300_000, work)).toBe(5)
    const deadline = Deadline.after(300_000)
    expect(await deadline.race(7 as unknown as Promise<number>)).toBe(7)
    expect(await deadline.race(work)).toBe(5)
    deadline[Symbol.dispose]()
    expect(timers()).toBe(before)
  })

  it('rejects with DeadlineExceededError at expiry and aborts the work signal', async () => {
    let seen: AbortSignal | undefined
    const started = performance.now()
    const error = await withDeadline(30, (signal) => {
      seen = signal
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted late')), { once: true }))
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DeadlineExceededError)
    expect(seen?.aborted).toBe(true)
    expect(performance.now() - started).toBeGreaterThanOrEqual(29)
  })

  it('passes the work rejection through and does not call work on an expired deadline', async () => {
    await expect(withDeadline(1_000, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
    await expect(
      withDeadline(1_000, () => {
        throw new Error('sync')
      }),
    ).rejects.toThrow('sync')
    const expired = Deadline.after(0)
    const work = vi.fn(async () => 1)
    await expect(expired.race(work)).rejects.toBeInstanceOf(DeadlineExceededError)
    expect(work).not.toHaveBeenCalled()
  })

  it('a nested withDeadline never outlives the enclosing one', async () => {
    const outer = Deadline.after(30)
    const error = await outer.run(() => withDeadline(10_000, () => sleep(200))).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DeadlineExceededError)
    expect((error as DeadlineExceededError).source).toBe('parent')
  })

  it('many concurrent races, children and links add no listener per call, and raise no MaxListenersExceededWarning', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    const outside = new AbortController()
    const deadline = Deadline.after(1_000, { signal: outside.signal })
    const signal = deadline.signal
    // Recent Node sets no listener limit on an AbortSignal (22.12 sets 10), so no warning could fire there:
    // give both signals the usual limit of 10, which a listener per call would pass.
    setMaxListeners(10, outside.signal)
    setMaxListeners(10, signal)
    const linked = Array.from({ length: 50 }, () => Deadline.after(1_000, { signal: outside.signal }))
    const races = Promise.all(Array.from({ length: 50 }, () => deadline.race(sleep(1))))
    const nested = deadline.run(() => Promise.all(Array.from({ length: 50 }, () => withDeadline(500, () => sleep(1)))))
    // At peak: the races and children wait on the deadline without listening to its signal,
    // and the 51 deadlines linked to the outside signal share one listener on it.
    const peak = { signal: getEventListeners(signal, 'abort').length, outside: getEventListeners(outside.signal, 'abort').length }
    await Promise.all([races, nested])
    for (const each of linked) each[Symbol.dispose]()
    deadline[Symbol.dispose]()
    // The signal handed out takes any number of listeners (concurrent fetches on one request deadline), also where Node's default is 10.
    const fresh = Deadline.after(1_000)
    expect(maxListeners(fresh.signal)).toBe(0)
    fresh[Symbol.dispose]()
    await sleep(5)
    process.off('warning', onWarning)
    expect(peak).toEqual({ signal: 0, outside: 1 })
    expect(getEventListeners(outside.signal, 'abort')).toHaveLength(0)
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
  })
})

describe('a deadline that follows its parent and an outside signal', () => {
  it('a child aborts with whichever ends first, and leaves no listener on the signal', () => {
    const job = new AbortController()
    const parent = Deadline.after(1_000)
    const first = parent.child(500, { signal: job.signal })
    const second = parent.child(500, { signal: job.signal })
    expect(getEventListeners(job.signal, 'abort')).toHaveLength(1)
    parent.cancel(new Error('parent'))
    expect(first.signal.reason).toMatchObject({ message: 'the parent deadline was cancelled' })
    expect(second.signal.aborted).toBe(true)
    expect(getEventListeners(job.signal, 'abort')).toHaveLength(0)

    const other = Deadline.after(1_000)
    const child = other.child(500, { signal: job.signal })
    const stop = new Error('job stopped')
    job.abort(stop)
    expect(child.signal.reason).toMatchObject({ message: 'the signal the deadline follows was aborted', cause: stop })
    expect(other.signal.aborted).toBe(false)
    other[Symbol.dispose]()
  })

  it('a child of a disposed parent still follows the signal; disposing it unlinks', () => {
    const job = new AbortController()
    const parent = Deadline.after(1_000)
    parent[Symbol.dispose]()
    const child = parent.child(500, { signal: job.signal })
    expect(getEventListeners(job.signal, 'abort')).toHaveLength(1)
    child[Symbol.dispose]()
    expect(getEventListeners(job.signal, 'abort')).toHaveLength(0)
    const linked = Deadline.after(1_000).child(500, { signal: job.signal })
    job.abort()
    expect(linked.signal.reason).toBeInstanceOf(DeadlineCancelledError)
  })

  it('withDeadline(ms, work, { signal }) stops the work when the signal aborts, inside or outside a deadline', async () => {
    for (const enclosing of [undefined, Deadline.after(1_000)]) {
      const job = new AbortController()
      const seen: AbortSignal[] = []
      const run = () =>
        withDeadline(
          1_000,
          (signal) => {
            seen.push(signal)
            return new Promise<never>(() => {})
          },
          { signal: job.signal },
        )
      const pending = enclosing === undefined ? run() : enclosing.run(run)
      const stop = new Error('shutting down')
      job.abort(stop)
      const error = await pending.catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(DeadlineCancelledError)
      expect(error).toMatchObject({ cause: stop })
      expect(seen[0]?.aborted).toBe(true)
      expect(enclosing?.signal.aborted).not.toBe(true)
      enclosing?.[Symbol.dispose]()
    }
    const job = new AbortController()
    await expect(withDeadline(1_000, async () => 'done', { signal: job.signal })).resolves.toBe('done')
    expect(getEventListeners(job.signal, 'abort')).toHaveLength(0)
    await expect(withDeadline(1_000, async () => 'done', { signal: undefined })).resolves.toBe('done')
  })
})

describe('withoutDeadline', () => {
  it('runs with no current deadline, through what it awaits, keeping every other AsyncLocalStorage', async () => {
    const { AsyncLocalStorage } = await import('node:async_hooks')
    const trace = new AsyncLocalStorage<string>()
    using deadline = Deadline.after(1_000)
    const seen = await trace.run('trace-1', () =>
      deadline.run(() =>
        withoutDeadline(async () => {
          const before = Deadline.current()
          await sleep(1)
          const later = await new Promise((resolve) => setImmediate(() => resolve(Deadline.current())))
          return { before, after: Deadline.current(), later, trace: trace.getStore() }
        }),
      ),
    )
    expect(seen).toEqual({ before: undefined, after: undefined, later: undefined, trace: 'trace-1' })
    // Around it, the deadline is current again.
    expect(deadline.run(() => [withoutDeadline(() => Deadline.current()), Deadline.current()])).toEqual([undefined, deadline])
    // A withDeadline inside is a root: the request's end does not bound it.
    using short = Deadline.after(5)
    const inner = short.run(() => withoutDeadline(() => withDeadline(1_000, async () => Deadline.current()?.remaining())))
    await sleep(20)
    expect(await inner).toBeGreaterThan(100)
  })

  it('refuses fn that is not a function, naming it and the value', () => {
    expect(() => withoutDeadline(42 as never)).toThrow(/withoutDeadline: "fn" must be a function, got 42/)
  })
})

describe('properties', () => {
  // A tree as a list of nodes, each naming an earlier node (or the root, -1) as its parent.
  const tree = fc.array(fc.record({ parent: fc.nat(), ms: fc.integer({ min: -5, max: 5_000 }), cancel: fc.boolean() }), { maxLength: 40 })

  it('random trees of child deadlines never outlive a parent', () => {
    const before = timers()
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5_000 }), tree, (rootMs, nodes) => {
        const root = Deadline.after(rootMs)
        const all: Deadline[] = [root]
        const parentOf = new Map<Deadline, Deadline>()
        try {
          for (const node of nodes) {
            const parent = all[node.parent % all.length] as Deadline
            const parentLeft = parent.remaining()
            const child = parent.child(node.ms)
            parentOf.set(child, parent)
            all.push(child)
            // Read later than the parent, on the same clock: never more.
            expect(child.remaining()).toBeLessThanOrEqual(parentLeft)
            if (parent.expired) expect(child.expired).toBe(true)
            if (node.cancel && all.length % 3 === 0) parent.cancel()
          }
          for (const d of all) {
            for (let ancestor = parentOf.get(d); ancestor !== undefined; ancestor = parentOf.get(ancestor)) {
              const ancestorLeft = ancestor.remaining()
              expect(d.remaining()).toBeLessThanOrEqual(ancestorLeft)
              if (ancestor.expired) expect(d.expired).toBe(true)
            }
          }
          root.cancel()
          for (const d of all) expect(d.expired).toBe(true)
        } finally {
          for (const d of all) d[Symbol.dispose]()
        }
      }),
      { numRuns: 500 },
    )
    expect(timers()).toBe(before)
  })

  it('remaining() never increases, across children and a wall-clock jump', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 2, maxLength: 8 }),
        async (ms, waits) => {
          const deadline = Deadline.after(ms)
          const child = deadline.child(ms * 2)
          let last = deadline.remaining()
          let lastChild = child.remaining()
          for (const wait of waits) {
            if (wait === 3) vi.spyOn(Date, 'now').mockReturnValue(Date.now() - 3_600_000)
            else await sleep(wait)
            const now = deadline.remaining()
            const nowChild = child.remaining()
            expect(now).toBeLessThanOrEqual(last)
            expect(nowChild).toBeLessThanOrEqual(lastChild)
            expect(nowChild).toBeLessThanOrEqual(now)
            expect(now).toBeGreaterThanOrEqual(0)
            last = now
            lastChild = nowChild
            vi.restoreAllMocks()
          }
          child[Symbol.dispose]()
          deadline[Symbol.dispose]()
        },
      ),
      { numRuns: 40 },
    )
  })
})

describe('onAbort', () => {
  it('calls each listener once with the reason, in order with children, until disposed', async () => {
    const parent = Deadline.after(10)
    const child = parent.child(1_000)
    const seen: unknown[] = []
    const kept = parent.onAbort((reason) => seen.push(['parent', reason]))
    const dropped = parent.onAbort((reason) => seen.push(['dropped', reason]))
    const fromChild = child.onAbort((reason) => seen.push(['child', reason]))
    dropped[Symbol.dispose]()
    dropped[Symbol.dispose]()
    await new Promise((resolve) => parent.signal.addEventListener('abort', resolve))
    const reason = parent.signal.reason as DeadlineExceededError
    expect(seen).toEqual([
      ['parent', reason],
      ['child', child.signal.reason],
    ])
    expect((child.signal.reason as DeadlineExceededError).cause).toBe(reason)
    kept[Symbol.dispose]()
    fromChild[Symbol.dispose]()
  })

  it("is called after the signal's abort listeners, the signal aborted with the same reason", () => {
    const deadline = Deadline.after(1_000)
    const order: string[] = []
    deadline.signal.addEventListener('abort', () => order.push('signal'))
    let seen: unknown[] = []
    using _link = deadline.onAbort((reason) => {
      order.push('onAbort')
      seen = [deadline.signal.aborted, deadline.signal.reason === reason]
    })
    deadline.cancel()
    expect(order).toEqual(['signal', 'onAbort'])
    expect(seen).toEqual([true, true])
  })

  it('calls at once on an aborted deadline, never after dispose, and leaves no timer or waiter behind', () => {
    const before = timers()
    const gone = Deadline.after(0)
    const now: unknown[] = []
    gone.onAbort((reason) => now.push(reason))
    expect(now).toEqual([gone.signal.reason])

    const deadline = Deadline.after(1_000)
    const calls: unknown[] = []
    for (let i = 0; i < 10_000; i++) deadline.onAbort((reason) => calls.push(reason))[Symbol.dispose]()
    const last = deadline.onAbort((reason) => calls.push(reason))
    deadline.cancel(new Error('stop'))
    expect(calls).toHaveLength(1)
    expect((calls[0] as Error).message).toBe('stop')
    last[Symbol.dispose]()
    expect(timers()).toBe(before)
  })

  it('a throwing listener neither stops the others nor the abort, and is reported as uncaught', () => {
    const deadline = Deadline.after(1_000)
    const child = deadline.child(500)
    const reported: (() => void)[] = []
    const nextTick = vi.spyOn(process, 'nextTick').mockImplementation(((callback: () => void) => {
      reported.push(callback)
    }) as typeof process.nextTick)
    const after: unknown[] = []
    deadline.onAbort(() => {
      throw new Error('listener bug')
    })
    deadline.onAbort((reason) => after.push(reason))
    const why = new Error('cancelled')
    expect(() => deadline.cancel(why)).not.toThrow()
    nextTick.mockRestore()
    expect(after).toEqual([why])
    expect(child.expired).toBe(true)
    expect(reported).toHaveLength(1)
    expect(() => reported[0]?.()).toThrow('listener bug')
  })
})

describe('source rules', () => {
  it('uses neither AbortSignal.any nor AbortSignal.timeout', () => {
    const dir = new URL('.', import.meta.url)
    for (const file of readdirSync(dir).filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts'))) {
      const text = readFileSync(new URL(file, dir), 'utf8')
      expect(text, file).not.toMatch(/AbortSignal\.(any|timeout)\(/)
    }
  })
})

describe('onAbort unsubscribe during notification', () => {
  it('a subscription disposed by an earlier listener during the abort is not called', () => {
    const deadline = Deadline.after(1_000)
    const calls: string[] = []
    let third: Disposable | undefined
    deadline.onAbort(() => calls.push('first'))
    deadline.onAbort(() => {
      calls.push('second')
      third?.[Symbol.dispose]() // unsubscribes 'third' before it has been told
    })
    third = deadline.onAbort(() => calls.push('third'))
    deadline.cancel()
    // EventTarget semantics (a listener removed during dispatch is not called), and the README: the Disposable "unsubscribes".
    expect(calls).toEqual(['first', 'second'])
    deadline[Symbol.dispose]()
  })

  it('the same holds for an abort listener on the signal (reference behaviour)', () => {
    const deadline = Deadline.after(1_000)
    const calls: string[] = []
    const third = () => calls.push('third')
    deadline.signal.addEventListener('abort', () => calls.push('first'))
    deadline.signal.addEventListener('abort', () => {
      calls.push('second')
      deadline.signal.removeEventListener('abort', third)
    })
    deadline.signal.addEventListener('abort', third)
    deadline.cancel()
    expect(calls).toEqual(['first', 'second'])
  })
})

describe('withDeadline whose work returns a thenable with a throwing then()', () => {
  it('rejects and disposes its deadline, leaving no timer armed (a 30 s one keeps the process alive)', async () => {
    const before = timers()
    const broken = {
      // biome-ignore lint/suspicious/noThenProperty: a thenable is the point of this test.
      then() {
        throw new Error('broken thenable')
      },
    }
    await expect(withDeadline(30_000, () => broken as never)).rejects.toThrow('broken thenable')
    expect(timers()).toBe(before)
  })
})

describe('a child of a disposed parent that runs out at the parent end', () => {
  it("reports the parent's end (source parent, root source inherited), not a local 1 s budget", async () => {
    const parent = Deadline.after(20, { inherited: true }) // the caller's budget
    parent[Symbol.dispose]()
    const child = parent.child(1_000)
    await sleep(60)
    const reason = child.signal.reason as DeadlineExceededError & { source: string }
    expect([reason.source, rootDeadlineSource(reason)]).toEqual(['parent', 'inherited'])
  })
})

describe('a child of a deadline that was aborted (not by expiry) and whose end has passed', () => {
  it("inherits the parent's abort reason, as it does before the parent's end", async () => {
    const parent = Deadline.after(20)
    parent.cancel(new ClientClosedError()) // the client left
    const before = parent.child(1_000) // end not passed yet
    await sleep(40)
    const after = parent.child(1_000) // end passed
    expect(before.signal.reason).toBeInstanceOf(ClientClosedError)
    expect(after.signal.reason).toBeInstanceOf(ClientClosedError)
  })
})
