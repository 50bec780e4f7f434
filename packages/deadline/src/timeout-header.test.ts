import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { encodeTimeout, MAX_HEADER_TIMEOUT, parseTimeout } from './timeout-header.js'

describe('parseTimeout', () => {
  it('accepts 1..10 ASCII digits and nothing else', () => {
    expect(parseTimeout('250')).toBe(250)
    expect(parseTimeout('0')).toBe(0)
    expect(parseTimeout('0007')).toBe(7)
    expect(parseTimeout('9999999999')).toBe(9_999_999_999)
    for (const bad of [undefined, '', ' 1', '1 ', '+1', '-1', '1.5', '1e3', '0x10', '12345678901', 'NaN', 'Infinity', '１２', '1,2']) {
      expect(parseTimeout(bad), String(bad)).toBeUndefined()
    }
  })

  it('caps at the route timeout when given one', () => {
    expect(parseTimeout('5000', 2_000)).toBe(2_000)
    expect(parseTimeout('1500', 2_000)).toBe(1_500)
  })

  it('refuses a cap that is not a number >= 0, naming the value', () => {
    expect(() => parseTimeout('100', -1)).toThrow(new RangeError('parseTimeout: "max" must be a number >= 0, got -1'))
    expect(() => parseTimeout('100', Number.NaN)).toThrow(RangeError)
    expect(() => parseTimeout('100', '' as never)).toThrow(new TypeError(`parseTimeout: "max" must be a number >= 0, got ''`))
    expect(() => parseTimeout('100', Symbol('x') as never)).toThrow(TypeError)
  })

  it('never yields NaN, a negative or more than the route timeout over 100,000 random strings', () => {
    const header = fc.oneof(
      fc.string({ maxLength: 14 }),
      fc.string({ unit: fc.constantFrom('0', '1', '5', '9', '-', '+', '.', 'e', ' ', 'x'), maxLength: 14 }),
      fc.stringMatching(/^[0-9]{1,12}$/),
      fc.nat().map(String),
    )
    let accepted = 0
    fc.assert(
      fc.property(header, fc.integer({ min: 1, max: 2 ** 31 }), (value, routeTimeout) => {
        const ms = parseTimeout(value, routeTimeout)
        if (ms === undefined) {
          expect(/^[0-9]{1,10}$/.test(value)).toBe(false)
          return
        }
        accepted++
        expect(Number.isNaN(ms)).toBe(false)
        expect(Number.isInteger(ms)).toBe(true)
        expect(ms).toBeGreaterThanOrEqual(0)
        expect(ms).toBeLessThanOrEqual(routeTimeout)
        expect(ms).toBe(Math.min(Number(value), routeTimeout))
      }),
      { numRuns: 100_000 },
    )
    // The generator reaches the accepting branch often enough to mean something.
    expect(accepted).toBeGreaterThan(20_000)
  })
})

describe('encodeTimeout', () => {
  it('rounds down, clamps to 0..10 digits and round-trips through parseTimeout', () => {
    expect(encodeTimeout(250.9)).toBe('250')
    expect(encodeTimeout(-3)).toBe('0')
    expect(encodeTimeout(Number.POSITIVE_INFINITY)).toBe(String(MAX_HEADER_TIMEOUT))
    expect(() => encodeTimeout(Number.NaN)).toThrow(/encodeTimeout: "ms" must be a number of milliseconds, got NaN/)
    fc.assert(
      fc.property(fc.double({ noNaN: true }), (ms) => {
        const parsed = parseTimeout(encodeTimeout(ms))
        expect(parsed).toBeDefined()
        expect(parsed).toBeLessThanOrEqual(Math.max(0, ms))
      }),
    )
  })
})
