import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { describeValue, objectOption } from './options.js'

describe('describeValue "short, quoted, never throwing"', () => {
  it('does not throw for a value whose custom inspect throws', () => {
    const hostile = {
      [inspect.custom]() {
        throw new Error('inspect boom')
      },
    }
    expect(() => describeValue(hostile)).not.toThrow()
  })

  it('an unknown option whose value has a throwing custom inspect still gives the TypeError naming the option', () => {
    const hostile = {
      [inspect.custom]() {
        throw new Error('inspect boom')
      },
    }
    expect(() => objectOption('X', 'options', { timout: hostile }, ['timeout'])).toThrow(/unknown option "timout"/)
  })

  it('an unknown option that is a throwing getter still gives the TypeError naming the option', () => {
    const options = {
      get timout(): number {
        throw new Error('getter boom')
      },
    }
    expect(() => objectOption('X', 'options', options, ['timeout'])).toThrow(/unknown option "timout"/)
  })

  it('names an AbortSignal by what it says, not by its internal symbols (a signal passed where options go)', () => {
    expect(describeValue(new AbortController().signal)).toBe('AbortSignal { aborted: false }')
    expect(describeValue(AbortSignal.abort())).toBe('AbortSignal { aborted: true }')
    expect(() => objectOption('X', 'options', { signal: new AbortController().signal }, ['fallback'])).toThrow(
      'X: unknown option "signal", got AbortSignal { aborted: false }',
    )
  })

  it('stays short for an object with many keys', () => {
    const wide = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`k${i}`, i]))
    expect(describeValue(wide).length).toBeLessThan(1_000)
  })
})

describe('objectOption "a plain object (or absent)"', () => {
  it('refuses a Map (its entries are invisible to the unknown-name check)', () => {
    expect(() => objectOption('X', 'options', new Map([['timout', 1]]), ['timeout'])).toThrow(TypeError)
  })
})
