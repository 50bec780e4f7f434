import type { IncomingMessage, ServerResponse } from 'node:http'
import { register as globalRegistry, Registry } from 'prom-client'
import { describeValue } from './options.js'

/**
 * What the handler needs of a registry: any prom-client `Registry`, Prometheus or OpenMetrics.
 *
 * @example
 * ```ts
 * const source: ExpositionSource = new Registry(Registry.OPENMETRICS_CONTENT_TYPE)
 * app.get('/metrics', metricsHandler(source)) // several registries: metricsHandler([register, jobsRegistry])
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
 * Several registries are given as an array and merged at every scrape:
 * `Registry.merge()` made once copies only the metrics existing at that moment,
 * while ballast creates its metrics when its components are constructed, after
 * the handler is mounted. They must share a content type, and hold no metric of
 * the same name; as with `Registry.merge()`, their default labels are not served.
 *
 * @example
 * ```ts
 * app.get('/metrics', metricsHandler())
 * // or with a registry of your own
 * app.get('/metrics', metricsHandler(registry))
 * // or several, the global one (where ballast registers by default) included
 * app.get('/metrics', metricsHandler([register, jobsRegistry]))
 * ```
 */
export function metricsHandler(
  registry: ExpositionSource | readonly Registry[] = globalRegistry,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const source = Array.isArray(registry) ? mergedOnScrape(registry) : checkedSource(registry, 'registry', ['metrics'])
  return async function serveMetrics(_req, res) {
    try {
      const body = await source.metrics()
      res.statusCode = 200
      res.setHeader('content-type', source.contentType)
      res.end(body)
    } catch (error) {
      res.statusCode = 500
      res.setHeader('content-type', 'text/plain; charset=utf-8')
      res.end(`metrics collection failed: ${error instanceof Error ? error.message : describeValue(error)}\n`)
    }
  }
}

// By shape, not class: a registry may come from another copy of prom-client.
function checkedSource(value: unknown, name: string, methods: readonly string[]): ExpositionSource {
  if (
    typeof value !== 'object' ||
    value === null ||
    methods.some((method) => typeof (value as Record<string, unknown>)[method] !== 'function')
  ) {
    throw new TypeError(`metricsHandler: "${name}" must be a prom-client Registry, got ${describeValue(value)}`)
  }
  return value as ExpositionSource
}

function mergedOnScrape(registries: readonly unknown[]): ExpositionSource {
  if (registries.length === 0) throw new RangeError('metricsHandler: "registry" must hold at least one Registry, got []')
  // Registry.merge() reads the members' metrics through getMetricsAsArray().
  const members = registries.map((member, i) => checkedSource(member, `registry[${i}]`, ['metrics', 'getMetricsAsArray'])) as Registry[]
  const [first] = members as [Registry]
  members.forEach(({ contentType }, i) => {
    if (contentType !== first.contentType) {
      throw new TypeError(
        `metricsHandler: "registry[${i}]" must have the content type of "registry[0]", ${describeValue(first.contentType)}, got ${describeValue(contentType)}`,
      )
    }
  })
  return {
    metrics: () => Registry.merge(members).metrics(),
    get contentType() {
      return first.contentType
    },
  }
}
