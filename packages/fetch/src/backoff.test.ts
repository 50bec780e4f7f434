import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { backoff, retryAfterMs } from './backoff.js'

describe('backoff', () => {
  it('grows exponentially from delay, capped at maxDelay, with equal jitter', () => {
    expect(backoff(1, 50, 1_000, () => 0)).toBe(25)
    expect(backoff(1, 50, 1_000, () => 1)).toBe(50)
    expect(backoff(3, 50, 1_000, () => 0)).toBe(100)
    expect(backoff(3, 50, 1_000, () => 1)).toBe(200)
    expect(backoff(10, 50, 1_000, () => 1)).toBe(1_000)
  })

  it('always waits between half and all of the capped exponential step', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 0, max: 5_000 }),
        fc.integer({ min: 0, max: 60_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (retry, delay, extra, random) => {
          const maxDelay = delay + extra
          const ceiling = Math.min(maxDelay, delay * 2 ** (retry - 1))
          const wait = backoff(retry, delay, maxDelay, () => random)
          return wait >= ceiling / 2 && wait <= ceiling
        },
      ),
    )
  })
})

describe('retryAfterMs', () => {
  const now = Date.parse('2026-01-01T00:00:00Z')

  it('reads delay-seconds and HTTP dates', () => {
    expect(retryAfterMs('2', now)).toBe(2_000)
    expect(retryAfterMs(' 0 ', now)).toBe(0)
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:03 GMT', now)).toBe(3_000)
    expect(retryAfterMs('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0)
  })

  it('reads the obsolete HTTP-date forms as GMT, whatever the local zone', () => {
    expect(retryAfterMs('Thursday, 01-Jan-26 00:00:04 GMT', now)).toBe(4_000)
    // asctime has no zone: read as GMT, not as the machine's local time.
    const zone = process.env.TZ
    process.env.TZ = 'America/New_York'
    try {
      expect(retryAfterMs('Thu Jan  1 00:00:05 2026', now)).toBe(5_000)
    } finally {
      if (zone === undefined) delete process.env.TZ
      else process.env.TZ = zone
    }
  })

  it('ignores what is neither', () => {
    // Date.parse reads the last two as far-future dates.
    for (const value of [null, undefined, '', '-1', '1.5', '2e3', 'soon', '12345678901', 'Retry in 2050', 'x 2030']) {
      expect(retryAfterMs(value, now)).toBeUndefined()
    }
  })
})
