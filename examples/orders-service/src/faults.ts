import { numberOption, objectOption } from '@ballast/core'

/** The faults the inventory service injects; switched at run time through `PUT /admin/faults`. */
export interface Faults {
  /** Added to every stock and reservation answer, in ms. */
  readonly latencyMs: number
  /** Uniform jitter around `latencyMs` (±), in ms. */
  readonly jitterMs: number
  /** Share of answers replaced by a 500, 0..1. */
  readonly errorRate: number
  /** Never answer: hold the request until the caller gives up (or its propagated deadline ends). */
  readonly hang: boolean
}

/** No fault: a healthy inventory. */
export const HEALTHY: Faults = Object.freeze({ latencyMs: 0, jitterMs: 0, errorRate: 0, hang: false })

const OWNER = 'inventory faults'

/**
 * Validates a faults update (a partial one is merged into `current`). Bad input
 * throws a `TypeError`/`RangeError` naming the field, which the admin endpoint
 * answers as a 400.
 *
 * @example
 * ```ts
 * parseFaults({ latencyMs: 700 }, HEALTHY) // { latencyMs: 700, jitterMs: 0, errorRate: 0, hang: false }
 * ```
 */
export function parseFaults(input: unknown, current: Faults): Faults {
  const body = objectOption<Record<string, unknown>>(OWNER, 'body', input ?? null) ?? {}
  for (const key of Object.keys(body)) {
    if (!(key in HEALTHY)) throw new RangeError(`${OWNER}: unknown field "${key}"`)
  }
  if (body.hang !== undefined && typeof body.hang !== 'boolean') {
    throw new TypeError(`${OWNER}: option "hang" must be a boolean, got ${JSON.stringify(body.hang)}`)
  }
  return Object.freeze({
    latencyMs: numberOption(OWNER, 'latencyMs', body.latencyMs, current.latencyMs, { min: 0, max: 60_000 }),
    jitterMs: numberOption(OWNER, 'jitterMs', body.jitterMs, current.jitterMs, { min: 0, max: 60_000 }),
    errorRate: numberOption(OWNER, 'errorRate', body.errorRate, current.errorRate, { min: 0, max: 1 }),
    hang: (body.hang as boolean | undefined) ?? current.hang,
  })
}

/** One draw of the injected latency, never negative. */
export function drawLatency(faults: Faults, random: () => number = Math.random): number {
  return Math.max(0, faults.latencyMs + (random() * 2 - 1) * faults.jitterMs)
}
