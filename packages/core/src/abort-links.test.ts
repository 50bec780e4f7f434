import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { AbortLinks } from './abort-links.js'

describe('AbortLinks', () => {
  it('one listener per signal for any number of items, gone with the last; an abort tells each item still linked once', () => {
    const told: [string, unknown][] = []
    const links = new AbortLinks<string>((item, signal) => told.push([item, signal.reason]))
    const shared = new AbortController()
    const items = Array.from({ length: 50 }, (_, i) => `job-${i}`)
    for (const item of items) links.add(shared.signal, item)
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(1)
    for (const item of items.slice(10)) links.delete(shared.signal, item)
    links.delete(shared.signal, 'never linked')
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(1)
    shared.abort('stop')
    expect(told).toEqual(items.slice(0, 10).map((item) => [item, 'stop']))
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0)
    // Unlinking after the abort (an item that ends as it is told) is a no-op.
    links.delete(shared.signal, 'job-0')

    const other = new AbortController()
    links.add(other.signal, 'a')
    links.delete(other.signal, 'a')
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(0)
    other.abort()
    expect(told).toHaveLength(10)
  })

  it('does not tell an item that an earlier one unlinked while the signal aborted', () => {
    const controller = new AbortController()
    const told: string[] = []
    const links = new AbortLinks<string>((item, signal) => {
      told.push(item)
      if (item === 'first') links.delete(signal, 'second')
    })
    links.add(controller.signal, 'first')
    links.add(controller.signal, 'second')
    links.add(controller.signal, 'third')
    controller.abort()
    expect(told).toEqual(['first', 'third'])
  })

  it('tells only the items linked when the signal aborted: one linked again or added by a callback is not told', () => {
    const controller = new AbortController()
    const told: string[] = []
    const links = new AbortLinks<string>((item, signal) => {
      told.push(item)
      links.add(signal, item)
      links.add(signal, `${item}+`)
    })
    links.add(controller.signal, 'a')
    links.add(controller.signal, 'b')
    controller.abort()
    expect(told).toEqual(['a', 'b'])
  })

  it('keeps signals apart, and an item linked to two signals is told by each', () => {
    const told: string[] = []
    const links = new AbortLinks<string>((item, signal) => told.push(`${item}:${String(signal.reason)}`))
    const first = new AbortController()
    const second = new AbortController()
    links.add(first.signal, 'x')
    links.add(second.signal, 'x')
    links.add(second.signal, 'y')
    first.abort('first')
    expect(told).toEqual(['x:first'])
    second.abort('second')
    expect(told).toEqual(['x:first', 'x:second', 'y:second'])
  })
})
