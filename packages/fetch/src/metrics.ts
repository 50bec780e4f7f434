import { counter, FastCounter, type MetricsTarget } from '@ballast/core'
import type { Counter } from 'prom-client'

/**
 * `status_class` label values of `ballast_fetch_requests_total`.
 *
 * @example
 * ```ts
 * const cls: StatusClass = 'fallback' // the fallback answered
 * ```
 */
export type StatusClass = '2xx' | '3xx' | '4xx' | '5xx' | 'error' | 'fallback'

const STATUS_CLASSES: readonly StatusClass[] = ['2xx', '3xx', '4xx', '5xx', 'error', 'fallback']
// Methods fetch can send (it refuses CONNECT and TRACE), plus the fold for the rest.
const METHODS: readonly string[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', '_OTHER']

/** The status class of a response status. */
export function statusClass(status: number): StatusClass {
  if (status < 300) return '2xx'
  if (status < 400) return '3xx'
  if (status < 500) return '4xx'
  return '5xx'
}

/** The events a client reports; {@link FetchMetrics} turns them into series. */
export interface FetchObserver {
  request(method: string, status: StatusClass): void
  failFast(): void
  retry(): void
}

/**
 * `ballast_fetch_requests_total{client,method,status_class}` (one per call,
 * whatever its attempts), `ballast_fetch_fail_fast_total{client}` and
 * `ballast_fetch_retries_total{client}`, every label set at 0 at construction.
 */
export class FetchMetrics implements FetchObserver {
  readonly #requests: Counter<'client' | 'method' | 'status_class'>
  readonly #client: string
  // Every series of this client, bound once (created at 0 here) and counted
  // without prom-client's per-call label hashing.
  readonly #bound = new Map<string, Record<StatusClass, FastCounter>>()
  readonly #failFast: FastCounter
  readonly #retries: FastCounter

  constructor(target: MetricsTarget, client: string) {
    this.#client = client
    this.#requests = counter(target, {
      name: 'fetch_requests_total',
      help: 'Outbound calls made through each ballast fetch client, by method and final status class (error: no response; fallback: served by the fallback).',
      labelNames: ['client', 'method', 'status_class'],
    })
    const failFast = counter(target, {
      name: 'fetch_fail_fast_total',
      help: "Outbound calls refused without opening a socket because the caller's deadline left less than minBudget.",
      labelNames: ['client'],
    })
    const retries = counter(target, {
      name: 'fetch_retries_total',
      help: 'Retries made by each ballast fetch client (attempts after the first).',
      labelNames: ['client'],
    })
    for (const method of METHODS) this.#bound.set(method, this.#seriesOf(method))
    this.#failFast = new FastCounter(failFast, { client })
    this.#retries = new FastCounter(retries, { client })
  }

  #seriesOf(method: string): Record<StatusClass, FastCounter> {
    const series = {} as Record<StatusClass, FastCounter>
    for (const status of STATUS_CLASSES) {
      series[status] = new FastCounter(this.#requests, { client: this.#client, method, status_class: status })
    }
    return series
  }

  request(method: string, status: StatusClass): void {
    let series = this.#bound.get(method)
    if (series === undefined) {
      // Not a method label this client knows (the caller passed the label through unfolded): bound on first use.
      series = this.#seriesOf(method)
      this.#bound.set(method, series)
    }
    series[status].inc()
  }

  failFast(): void {
    this.#failFast.inc()
  }

  retry(): void {
    this.#retries.inc()
  }
}
