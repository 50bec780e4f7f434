import type { Sample } from './load-generator.js'

/** Counts and latency percentiles of a set of samples. */
export interface Stats {
  readonly requests: number
  readonly ok: number
  readonly fallbacks: number
  readonly s4xx: number
  readonly s503: number
  readonly s504: number
  /** 5xx other than 503 and 504. */
  readonly s5xx: number
  /** No HTTP answer at all (connection refused or reset). */
  readonly errors: number
  /** Requests the client itself gave up on (the demo's impatient callers). */
  readonly aborted: number
  readonly withRetryAfter: number
  readonly p50: number
  /** Robust to a brief stall of a shared machine, unlike p99: what the latency checks use. */
  readonly p90: number
  readonly p99: number
}

/** The q-quantile (0..1) of sorted values, nearest rank; 0 for none. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[index] as number
}

/** Summarises samples; latency percentiles leave out client aborts (their latency is the client's choice). */
export function summarise(samples: readonly Sample[]): Stats {
  let ok = 0
  let fallbacks = 0
  let s4xx = 0
  let s503 = 0
  let s504 = 0
  let s5xx = 0
  let errors = 0
  let aborted = 0
  let withRetryAfter = 0
  const latencies: number[] = []
  for (const sample of samples) {
    if (sample.status === -1) {
      aborted++
      continue
    }
    latencies.push(sample.latencyMs)
    if (sample.retryAfter) withRetryAfter++
    if (sample.status === 0) errors++
    else if (sample.status < 300) {
      ok++
      if (sample.fallback) fallbacks++
    } else if (sample.status < 500) s4xx++
    else if (sample.status === 503) s503++
    else if (sample.status === 504) s504++
    else s5xx++
  }
  latencies.sort((a, b) => a - b)
  return {
    requests: samples.length,
    ok,
    fallbacks,
    s4xx,
    s503,
    s504,
    s5xx,
    errors,
    aborted,
    withRetryAfter,
    p50: quantile(latencies, 0.5),
    p90: quantile(latencies, 0.9),
    p99: quantile(latencies, 0.99),
  }
}
