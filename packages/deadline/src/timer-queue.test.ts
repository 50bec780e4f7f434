import { afterEach, describe, expect, it, vi } from 'vitest'
import { Deadline } from './deadline.js'
import type { DeadlineExceededError } from './errors.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length

afterEach(() => {
  vi.useRealTimers()
})

describe('shared deadline timers', () => {
  it('deadlines made under fake timers run on that clock, and real ones made after are not stranded', async () => {
    vi.useFakeTimers()
    const fake = Deadline.after(50)
    vi.advanceTimersByTime(49)
    expect(fake.signal.aborted).toBe(false)
    vi.advanceTimersByTime(1)
    expect(fake.signal.aborted).toBe(true)
    // Queued on the fake clock, which is removed before it is advanced again.
    const stranded = Deadline.after(50)
    vi.useRealTimers()
    // Read first: the process may be preempted between the two, never before its timer is armed.
    const started = performance.now()
    const real = Deadline.after(50)
    await new Promise((resolve) => real.signal.addEventListener('abort', resolve))
    expect(performance.now() - started).toBeGreaterThanOrEqual(48)
    // Its fake timer never runs, but reading it still checks the (real) clock.
    expect(stranded.expired).toBe(true)
    stranded[Symbol.dispose]()
  })

  it('deadlines of one delay share one active Node timer, released when the last is disposed', () => {
    const before = timers()
    const many = Array.from({ length: 1_000 }, () => Deadline.after(4_321))
    expect(timers()).toBe(before + 1)
    const other = Deadline.after(4_322)
    expect(timers()).toBe(before + 2)
    for (const deadline of many.slice(0, 999)) deadline[Symbol.dispose]()
    expect(timers()).toBe(before + 2)
    many[999]?.[Symbol.dispose]()
    expect(timers()).toBe(before + 1)
    other[Symbol.dispose]()
    expect(timers()).toBe(before)
  })

  it('each deadline still fires at its own time, in order, whatever was disposed around it', async () => {
    const before = timers()
    const fired: { index: number; late: number }[] = []
    const created: { deadline: Deadline; due: number }[] = []
    for (let index = 0; index < 30; index++) {
      const deadline = Deadline.after(37)
      const due = performance.now() + 37
      created.push({ deadline, due })
      deadline.signal.addEventListener('abort', () => fired.push({ index, late: performance.now() - due }))
      // Every third is disposed a moment after the next one is queued behind it (long before it is
      // due): disposed ones never fire, and do not hold up the others.
      if ((index - 1) % 3 === 0) created[index - 1]?.deadline[Symbol.dispose]()
      // Spread the creation times so the queue re-arms for each head.
      await sleep(1)
    }
    await sleep(120)
    const expected = Array.from({ length: 30 }, (_, index) => index).filter((index) => index % 3 !== 0)
    expect(fired.map((entry) => entry.index)).toEqual(expected)
    // Not early beyond the event loop's cached, whole-millisecond timer clock (as a Node timer per
    // deadline would be): the queue expires what its timer was armed for, and re-reads the clock for the rest.
    for (const entry of fired) expect(entry.late).toBeGreaterThanOrEqual(-2)
    for (const index of expected) {
      const reason = created[index]?.deadline.signal.reason as DeadlineExceededError
      expect(reason.code).toBe('BALLAST_DEADLINE_EXCEEDED')
    }
    console.info(`[deadline] shared timer lateness: max ${Math.max(...fired.map((entry) => entry.late)).toFixed(1)} ms`)
    expect(timers()).toBeLessThanOrEqual(before)
  })

  it('a deadline created while another of the same delay fires is timed too', async () => {
    const before = timers()
    const first = Deadline.after(15)
    const second = await new Promise<{ deadline: Deadline; due: number }>((resolve) => {
      first.signal.addEventListener('abort', () => {
        const deadline = Deadline.after(15)
        resolve({ deadline, due: performance.now() + 15 })
      })
    })
    expect(first.expired).toBe(true)
    expect(second.deadline.expired).toBe(false)
    await new Promise((resolve) => second.deadline.signal.addEventListener('abort', resolve))
    expect(performance.now()).toBeGreaterThanOrEqual(second.due - 2)
    expect((second.deadline.signal.reason as DeadlineExceededError).code).toBe('BALLAST_DEADLINE_EXCEEDED')
    expect(timers()).toBeLessThanOrEqual(before)
  })

  it('many distinct delays (caller budgets from a header) leave no timer behind', async () => {
    const before = timers()
    const deadlines = Array.from({ length: 300 }, (_, i) => Deadline.after(1_000 + i))
    expect(timers()).toBe(before + 300)
    for (const deadline of deadlines) deadline[Symbol.dispose]()
    expect(timers()).toBe(before)
    const short = Array.from({ length: 100 }, (_, i) => Deadline.after(5 + (i % 50)))
    await sleep(80)
    expect(short.every((deadline) => deadline.expired)).toBe(true)
    // Other timers of the process may have ended meanwhile: none of ours is left.
    expect(timers()).toBeLessThanOrEqual(before)
  })
})
