/**
 * Label for requests that matched no route (404s, and middleware-only answers).
 *
 * @example
 * ```ts
 * if (routeLabel(req) === UNMATCHED_ROUTE) notFound.inc() // no route answered
 * ```
 */
export const UNMATCHED_ROUTE = '<unmatched>'

/**
 * Label for HTTP methods outside the standard set, as OpenTelemetry names it.
 *
 * @example
 * ```ts
 * zeroSeries(requests, labelProduct({ method: ['GET', 'POST', OTHER_METHOD] }))
 * ```
 */
export const OTHER_METHOD = '_OTHER'

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'])

/**
 * The parts of an Express request the label helpers read (Express 4 and 5).
 *
 * @example
 * ```ts
 * const req: RoutedRequest = { method: 'GET', baseUrl: '/api', route: { path: '/orders/:id' } }
 * routeLabel(req) // '/api/orders/:id'
 * ```
 */
export interface RoutedRequest {
  method?: string | undefined
  baseUrl?: string | undefined
  route?: { path?: unknown } | undefined
}

function templateOf(path: unknown): string {
  if (typeof path === 'string') return path
  if (Array.isArray(path)) return path.map(templateOf).join('|')
  return String(path)
}

/**
 * The route label of a request: the mount path plus the Express route template
 * (`/api/orders/:id`), never the concrete URL, so the label set is as bounded as
 * the application's routes. Requests no route answered get `<unmatched>`.
 *
 * Read it when the response finishes: before routing there is no route yet.
 * Router mount paths are taken as Express reports them in `req.baseUrl`; mount a
 * router on a path with parameters and the concrete values appear there, so keep
 * parameters in route paths, not in mount paths.
 *
 * @example
 * ```ts
 * res.on('finish', () => requests.inc({ route: routeLabel(req), method: methodLabel(req.method) }))
 * ```
 */
export function routeLabel(req: RoutedRequest): string {
  const path = req.route?.path
  if (path === undefined) return UNMATCHED_ROUTE
  const template = templateOf(path)
  const base = req.baseUrl ?? ''
  if (base === '') return template
  return template === '/' ? base : base + template
}

/**
 * The method label: the standard methods as they are, anything else `_OTHER`.
 *
 * @example
 * ```ts
 * methodLabel('get') // 'GET'
 * methodLabel('PROPFIND') // '_OTHER'
 * ```
 */
export function methodLabel(method: string | undefined): string {
  // Node's parser hands the standard methods over upper-case already: no copy for them.
  if (method !== undefined && KNOWN_METHODS.has(method)) return method
  const upper = method?.toUpperCase() ?? ''
  return KNOWN_METHODS.has(upper) ? upper : OTHER_METHOD
}
