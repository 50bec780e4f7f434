import { counter, labelProduct, type MetricsTarget, zeroSeries } from '@ballast/core'
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
  readonly #failFast: Counter<'client'>
  readonly #retries: Counter<'client'>
  readonly #client: string

  constructor(target: MetricsTarget, client: string) {
    this.#client = client
    this.#requests = counter(target, {
      name: 'fetch_requests_total',
      help: 'Outbound calls made through each ballast fetch client, by method and final status class (error: no response; fallback: served by the fallback).',
      labelNames: ['client', 'method', 'status_class'],
    })
    this.#failFast = counter(target, {
      name: 'fetch_fail_fast_total',
      help: "Outbound calls refused without opening a socket because the caller's deadline left less than minBudget.",
      labelNames: ['client'],
    })
    this.#retries = counter(target, {
      name: 'fetch_retries_total',
      help: 'Retries made by each ballast fetch client (attempts after the first).',
      labelNames: ['client'],
    })
    zeroSeries(this.#requests, labelProduct({ client: [client], method: METHODS, status_class: STATUS_CLASSES }))
    zeroSeries(this.#failFast, [{ client }])
    zeroSeries(this.#retries, [{ client }])
  }

  request(method: string, status: StatusClass): void {
    this.#requests.inc({ client: this.#client, method, status_class: status })
  }

  failFast(): void {
    this.#failFast.inc({ client: this.#client })
  }

  retry(): void {
    this.#retries.inc({ client: this.#client })
  }
}
