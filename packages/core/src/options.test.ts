import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  booleanOption,
  functionOption,
  MAX_TIMER_DELAY,
  numberOption,
  objectOption,
  oneOfOption,
  stringOption,
  timerDelay,
} from './options.js'

describe('option validation', () => {
  it('returns the fallback for undefined and the value when valid', () => {
    expect(numberOption('Thing', 'timeout', undefined, 10)).toBe(10)
    expect(numberOption('Thing', 'timeout', 5, 10, { min: 0 })).toBe(5)
    expect(booleanOption('Thing', 'exit', undefined, true)).toBe(true)
    expect(stringOption('Thing', 'name', 'a', undefined)).toBe('a')
    expect(oneOfOption('Thing', 'status', 503, [503, 504], 504)).toBe(503)
  })

  it('throws a TypeError naming the option and value for the wrong type', () => {
    expect(() => numberOption('Breaker', 'timeout', '800', 10)).toThrow(
      new TypeError('Breaker: option "timeout" must be a number, got \'800\''),
    )
    expect(() => numberOption('Breaker', 'timeout', Number.NaN, 10)).toThrow(TypeError)
    expect(() => booleanOption('Drain', 'exit', 'yes', true)).toThrow(/Drain: option "exit" must be a boolean, got 'yes'/)
    expect(() => functionOption('Breaker', 'fallback', 42)).toThrow(/option "fallback" must be a function, got 42/)
    expect(() => objectOption('Breaker', 'retry', [1])).toThrow(/option "retry" must be an object, got \[ 1 \]/)
    expect(() => stringOption('Breaker', 'name', 7, undefined)).toThrow(TypeError)
  })

  it('refuses option names it does not know, suggesting the closest known one', () => {
    const known = ['timeout', 'resetTimeout', 'retry']
    expect(() => objectOption('Breaker', 'options', { timout: 800 }, known)).toThrow(
      new TypeError('Breaker: unknown option "timout" (did you mean "timeout"?), got 800'),
    )
    expect(() => objectOption('Breaker', 'retry', { attempt: 3 }, ['attempts', 'delay'])).toThrow(
      new TypeError('Breaker: unknown option "retry.attempt" (did you mean "retry.attempts"?), got 3'),
    )
    expect(() => objectOption('Breaker', 'options', { ResetTimeOut: 5 }, known)).toThrow(/did you mean "resetTimeout"/)
    // Nothing close: no suggestion. A name set to undefined is refused too.
    expect(() => objectOption('Breaker', 'options', { colour: undefined }, known)).toThrow(
      new TypeError('Breaker: unknown option "colour", got undefined'),
    )
    expect(objectOption('Breaker', 'options', { timeout: 1, retry: undefined }, known)).toEqual({ timeout: 1, retry: undefined })
  })

  it('throws a RangeError for values out of bounds', () => {
    expect(() => numberOption('Breaker', 'timeout', -1, 10, { min: 0 })).toThrow(
      new RangeError('Breaker: option "timeout" must be a number >= 0, got -1'),
    )
    expect(() => numberOption('Breaker', 'volumeThreshold', 1.5, 20, { min: 0, integer: true })).toThrow(/an integer >= 0, got 1.5/)
    expect(() => numberOption('Breaker', 'ratio', 101, 50, { min: 0, max: 100 })).toThrow(/<= 100, got 101/)
    expect(() => stringOption('Breaker', 'name', 'bad name', undefined, /^[a-z]+$/)).toThrow(RangeError)
    expect(() => oneOfOption('deadline', 'status', 500, [503, 504], 504)).toThrow(/one of 503, 504, got 500/)
  })

  it('accepts every in-range number and rejects every other value', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        let result: number | undefined
        try {
          result = numberOption('T', 'n', value, 1, { min: 0, max: 100 })
        } catch (error) {
          expect(error instanceof TypeError || error instanceof RangeError).toBe(true)
          expect((error as Error).message).toContain('option "n"')
          return
        }
        expect(value === undefined ? result === 1 : result === value).toBe(true)
        expect(result).toBeGreaterThanOrEqual(0)
        expect(result).toBeLessThanOrEqual(100)
      }),
      { numRuns: 2_000 },
    )
  })

  it('maps delays beyond what setTimeout honours to "no timer"', () => {
    expect(timerDelay(100)).toBe(100)
    expect(timerDelay(-5)).toBe(0)
    expect(timerDelay(MAX_TIMER_DELAY)).toBe(MAX_TIMER_DELAY)
    expect(timerDelay(MAX_TIMER_DELAY + 1)).toBeUndefined()
    expect(timerDelay(Number.POSITIVE_INFINITY)).toBeUndefined()
  })

  it('never throws while rendering odd values', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(() => numberOption('T', 'n', cyclic, 1)).toThrow(/<ref \*1>|\[Circular/)
    expect(() => numberOption('T', 'n', Symbol('s'), 1)).toThrow(/Symbol\(s\)/)
    expect(() => numberOption('T', 'n', 'x'.repeat(1000), 1)).toThrow(/more characters/)
  })
})
