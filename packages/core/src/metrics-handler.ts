import type { IncomingMessage, ServerResponse } from 'node:http'
import { register as globalRegistry } from 'prom-client'
import { describeValue } from './options.js'

/**
 * What the handler needs of a registry: any prom-client `Registry`, Prometheus or OpenMetrics.
 *
 * @example
 * ```ts
 * const both: ExpositionSource = Registry.merge([register, jobsRegistry])
 * app.get('/metrics', metricsHandler(both))
 * ```
 */
export interface ExpositionSource {
  metrics(): Promise<string>
  readonly contentType: string
}

/**
 * An Express (or plain `node:http`) handler serving the registry's exposition
 * with the registry's own content type. A failing scrape answers 500 with the
 * reason as text instead of hanging the scraper.
 *
 * @example
 * ```ts
 * app.get('/metrics', metricsHandler())
 * // or with a registry of your own
 * app.get('/metrics', metricsHandler(registry))
 * ```
 */
export function metricsHandler(registry: ExpositionSource = globalRegistry): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  if (typeof registry !== 'object' || registry === null || typeof (registry as Partial<ExpositionSource>).metrics !== 'function') {
    throw new TypeError(`metricsHandler: "registry" must be a prom-client Registry, got ${describeValue(registry)}`)
  }
  return async function serveMetrics(_req, res) {
    try {
      const body = await registry.metrics()
      res.statusCode = 200
      res.setHeader('content-type', registry.contentType)
      res.end(body)
    } catch (error) {
      res.statusCode = 500
      res.setHeader('content-type', 'text/plain; charset=utf-8')
      res.end(`metrics collection failed: ${error instanceof Error ? error.message : describeValue(error)}\n`)
    }
  }
}
