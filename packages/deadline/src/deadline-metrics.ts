import {
  counter,
  FastCounter,
  FastHistogram,
  histogram,
  incSeries,
  labelProduct,
  type MetricsTarget,
  methodLabel,
  observeSeries,
  type RoutedRequest,
  routeLabel,
  zeroSeries,
} from '@ballast/core'
import type { Counter, Histogram } from 'prom-client'

/**
 * What the labels are read from: an Express request.
 *
 * @example
 * ```ts
 * const label = metrics.routeOf(req as MountedRequest) // '/api/orders/:id'
 * ```
 */
export interface MountedRequest extends RoutedRequest {
  readonly url?: string | undefined
}

// A route template whose every segment matches exactly one URL segment: no wildcard,
// optional part or regular expression.
const FIXED_SEGMENTS = /^[^*?(){}[\]+]*$/

/** Segments of `path` between `start` and `end` (`/a//b/` has 2), without allocating. */
function segmentCount(path: string, start = 0, end = path.length): number {
  let count = 0
  for (let i = start; i < end; i++) {
    if (path.charCodeAt(i) !== 47 && (i === start || path.charCodeAt(i - 1) === 47)) count++
  }
  return count
}

/** Where the path of `url` starts after its host (from `from`), or -1 when it has none. */
function pathStart(url: string, from: number): number {
  for (let i = from; i < url.length; i++) {
    const code = url.charCodeAt(i)
    if (code === 47) return i
    if (code === 63 || code === 35) return -1 // '?' or '#': no path
  }
  return -1
}

/** Where the path of `url` that starts at `start` ends: its query or fragment, or the end. */
function pathEnd(url: string, start: number): number {
  for (let i = start; i < url.length; i++) {
    const code = url.charCodeAt(i)
    if (code === 63 || code === 35) return i
  }
  return url.length
}

/**
 * The mount path of a routed request. When a request falls out of its router (a
 * handler's `next(error)` reaching an app-level error handler), Express puts
 * `req.baseUrl` and `req.url` back to the enclosing router's but leaves
 * `req.route` set. Inside the router, the path of `req.url` is what the route
 * template matched; out of it, the segments it has beyond the template's are the
 * router's mount path, spelled as the client did, as `baseUrl` is. Templates whose
 * segments are not one-to-one with the URL's keep `baseUrl`.
 */
function mountOf(req: MountedRequest): string | undefined {
  const base = req.baseUrl
  const template = req.route?.path
  const url = req.url
  if (typeof template !== 'string' || url === undefined || !FIXED_SEGMENTS.test(template)) return base
  // The path Express routed on: up to a query or fragment, without the scheme and host
  // of an absolute-form target (`http://host/path`).
  let start = 0
  if (url.charCodeAt(0) !== 47) {
    const scheme = url.indexOf('://')
    if (scheme === -1) return base
    start = pathStart(url, scheme + 3)
    if (start === -1) return base
  }
  const end = pathEnd(url, start)
  const missing = segmentCount(url, start, end) - segmentCount(template)
  if (missing <= 0) return base
  const mount = url
    .slice(start, end)
    .split('/')
    .filter((part) => part !== '')
    .slice(0, missing)
  return `${base ?? ''}/${mount.join('/')}`
}

/**
 * Why a request deadline ran out, as the `reason` label says it.
 *
 * @example
 * ```ts
 * const reason: ExceededReason = rootDeadlineSource(error) === 'inherited' ? 'inherited' : 'deadline'
 * ```
 */
export type ExceededReason = 'deadline' | 'inherited'

/**
 * The series of one (route, method), bound once: what a finished request updates.
 *
 * @example
 * ```ts
 * const series: RouteSeries = metrics.seriesOf(req)
 * series.finished(500, false) // one request, under a 500 ms budget of its own
 * ```
 */
export class RouteSeries {
  readonly #requests: FastCounter
  readonly #budgetDefault: FastHistogram
  readonly #budgetHeader: FastHistogram
  readonly #exceeded: Counter<'route' | 'method' | 'reason'>
  readonly #clientClosed: Counter<'route' | 'method'>
  readonly #answeredLate: Counter<'route' | 'method'>
  readonly #labels: { readonly route: string; readonly method: string }

  /** The route label these series carry. */
  readonly route: string

  constructor(metrics: Metrics, route: string, method: string) {
    this.route = route
    this.#labels = { route, method }
    this.#requests = new FastCounter(metrics.requests, { route, method })
    this.#budgetDefault = new FastHistogram(metrics.budget, { route, source: 'default' })
    this.#budgetHeader = new FastHistogram(metrics.budget, { route, source: 'header' })
    this.#exceeded = metrics.exceeded
    this.#clientClosed = metrics.clientClosed
    this.#answeredLate = metrics.answeredLate
  }

  /** A request finished (or was abandoned); called once per request. */
  finished(budgetMs: number, fromHeader: boolean): void {
    this.#requests.inc()
    if (Number.isFinite(budgetMs)) (fromHeader ? this.#budgetHeader : this.#budgetDefault).observe(budgetMs / 1_000)
  }

  exceeded(reason: ExceededReason): void {
    incSeries(this.#exceeded, { ...this.#labels, reason })
  }

  clientClosed(): void {
    incSeries(this.#clientClosed, this.#labels)
  }

  /** The handler's own answer went out after the deadline, before its timer could run. */
  answeredLate(): void {
    incSeries(this.#answeredLate, this.#labels)
  }
}

interface Metrics {
  readonly requests: Counter<'route' | 'method'>
  readonly exceeded: Counter<'route' | 'method' | 'reason'>
  readonly clientClosed: Counter<'route' | 'method'>
  readonly answeredLate: Counter<'route' | 'method'>
  readonly budget: Histogram<'route' | 'source'>
}

/**
 * Most route labels one middleware creates; requests of further routes are
 * counted under {@link OTHER_ROUTES}. Labels come from route templates, but the
 * mount path of a router is only known as the client spelled it (`req.baseUrl`),
 * so the cap keeps the series bounded whatever clients send.
 *
 * @example
 * ```ts
 * if (templates.length > MAX_ROUTE_LABELS) console.warn(`one deadline() labels ${MAX_ROUTE_LABELS} routes, the rest as <other>`)
 * ```
 */
export const MAX_ROUTE_LABELS = 200

/**
 * Route label of the requests past {@link MAX_ROUTE_LABELS}.
 *
 * @example
 * ```ts
 * const text = await register.getSingleMetricAsString('ballast_deadline_requests_total')
 * if (text.includes(`route="${OTHER_ROUTES}"`)) console.warn('over MAX_ROUTE_LABELS routes: some are counted as <other>')
 * ```
 */
export const OTHER_ROUTES = '<other>'

/**
 * Most mount paths one Express route is labelled under. A router mounted on a
 * path with parameters (`/t/:tenant`) would make a label per value a client
 * sends; past this many, the route's requests from further mounts are labelled
 * {@link OTHER_MOUNT} plus its template, so clients cannot use up
 * {@link MAX_ROUTE_LABELS} and push the application's routes into `<other>`.
 *
 * @example
 * ```ts
 * app.use('/t/:tenant', tenantRouter) // '/t/acme/orders' for the first MAX_MOUNTS_PER_ROUTE tenants, then '<mount>/orders'
 * ```
 */
export const MAX_MOUNTS_PER_ROUTE = 8

/**
 * Stands for the mount path in the label of a route seen under more than {@link MAX_MOUNTS_PER_ROUTE} mounts.
 *
 * @example
 * ```ts
 * const text = await register.getSingleMetricAsString('ballast_deadline_requests_total')
 * if (text.includes(`route="${OTHER_MOUNT}/`)) console.warn('a mount path has parameters: move them into route paths')
 * ```
 */
export const OTHER_MOUNT = '<mount>'

const BUDGET_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
const OVERRUN_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/**
 * The Prometheus series of the `deadline()` middleware (design section 4). The
 * middleware reports what happened; this class only counts. Route labels are
 * Express route templates; each (route, method) gets all its series at 0 the first
 * time it is seen, `header_rejected` at construction.
 *
 * @example
 * ```ts
 * const metrics = new DeadlineMetrics(metricsTarget('bench', { registry: new Registry() }))
 * metrics.known('/orders/:id', 'GET') // the route's series, at 0
 * ```
 */
export class DeadlineMetrics {
  readonly #requests: Counter<'route' | 'method'>
  readonly #exceeded: Counter<'route' | 'method' | 'reason'>
  readonly #budget: Histogram<'route' | 'source'>
  readonly #overrun: Histogram<'route'>
  readonly #lateWrites: Counter<'route'>
  readonly #clientClosed: Counter<'route' | 'method'>
  readonly #answeredLate: Counter<'route' | 'method'>
  readonly #headerRejected: Counter<'reason'>
  // Per method, then per route: the series bound once and updated on every request
  // without prom-client's label hashing (nor a key string built per request).
  readonly #seen = new Map<string, Map<string, RouteSeries>>()
  // Route labels in use, by canonical key: a router's mount path matches whatever
  // the case of the URL (Express's default), so '/API/x' and '/api/x' are one route.
  readonly #labels = new Map<string, string>()
  // The mount paths (lower case) each Express route object was labelled under.
  readonly #mounts = new WeakMap<object, Set<string>>()
  #last: { route: object; base: string | undefined; method: string | undefined; series: RouteSeries } | undefined

  constructor(target: MetricsTarget) {
    this.#requests = counter(target, {
      name: 'deadline_requests_total',
      help: 'Requests that ran under a deadline() middleware.',
      labelNames: ['route', 'method'],
    })
    this.#exceeded = counter(target, {
      name: 'deadline_exceeded_total',
      help: 'Requests answered because their deadline ran out; reason inherited when the caller budget was the limit.',
      labelNames: ['route', 'method', 'reason'],
    })
    this.#budget = histogram(target, {
      name: 'deadline_budget_seconds',
      help: 'Budget each request started with; source header when the caller budget was smaller than the route timeout.',
      labelNames: ['route', 'source'],
      buckets: BUDGET_BUCKETS,
    })
    this.#overrun = histogram(target, {
      name: 'deadline_overrun_seconds',
      help: 'How long a handler kept working past its deadline, up to its first write after the timeout response.',
      labelNames: ['route'],
      buckets: OVERRUN_BUCKETS,
    })
    this.#lateWrites = counter(target, {
      name: 'deadline_late_writes_total',
      help: 'Writes, ends and errors from handlers after the timeout response, dropped.',
      labelNames: ['route'],
    })
    this.#clientClosed = counter(target, {
      name: 'deadline_client_closed_total',
      help: 'Requests whose client disconnected before the response was finished.',
      labelNames: ['route', 'method'],
    })
    this.#answeredLate = counter(target, {
      name: 'deadline_answered_late_total',
      help: 'Responses the handler finished after its deadline, before the deadline timer could run (a busy event loop); sent as written.',
      labelNames: ['route', 'method'],
    })
    this.#headerRejected = counter(target, {
      name: 'deadline_header_rejected_total',
      help: 'Inbound timeout headers ignored (invalid) or already spent on arrival (expired).',
      labelNames: ['reason'],
    })
    zeroSeries(this.#headerRejected, labelProduct({ reason: ['invalid', 'expired'] }))
  }

  /**
   * The label to use for `label`: the first spelling seen of its canonical key,
   * or {@link OTHER_ROUTES} once {@link MAX_ROUTE_LABELS} labels exist.
   */
  #labelOf(label: string, key: string): string {
    const known = this.#labels.get(key)
    if (known !== undefined) return known
    if (this.#labels.size >= MAX_ROUTE_LABELS) return OTHER_ROUTES
    this.#labels.set(key, label)
    return label
  }

  /** The route label of a request, canonical and capped (see {@link MAX_ROUTE_LABELS}). */
  routeOf(req: MountedRequest): string {
    return this.#routeOf(req, mountOf(req))
  }

  #routeOf(req: RoutedRequest, base: string | undefined): string {
    const route = req.route
    const label = routeLabel(base === req.baseUrl ? req : { route, baseUrl: base })
    if (base === undefined || base === '' || route === undefined) return this.#labelOf(label, label)
    const mount = base.toLowerCase()
    const key = mount + label.slice(base.length)
    if (this.#labels.has(key) || this.#mountAllowed(route, mount)) return this.#labelOf(label, key)
    const collapsed = OTHER_MOUNT + label.slice(base.length)
    return this.#labelOf(collapsed, collapsed)
  }

  /** Whether `route` may get a label under one more mount path (see {@link MAX_MOUNTS_PER_ROUTE}). */
  #mountAllowed(route: object, mount: string): boolean {
    let mounts = this.#mounts.get(route)
    if (mounts === undefined) {
      mounts = new Set()
      this.#mounts.set(route, mounts)
    }
    if (mounts.has(mount)) return true
    if (mounts.size >= MAX_MOUNTS_PER_ROUTE) return false
    mounts.add(mount)
    return true
  }

  /** Creates every series of a (route, method) at 0, once. */
  #see(route: string, method: string): RouteSeries {
    let routes = this.#seen.get(method)
    const known = routes?.get(route)
    if (known !== undefined) return known
    zeroSeries(this.#requests, [{ route, method }])
    zeroSeries(this.#exceeded, labelProduct({ route: [route], method: [method], reason: ['deadline', 'inherited'] }))
    zeroSeries(this.#clientClosed, [{ route, method }])
    zeroSeries(this.#answeredLate, [{ route, method }])
    zeroSeries(this.#lateWrites, [{ route }])
    zeroSeries(this.#budget, labelProduct({ route: [route], source: ['default', 'header'] }))
    zeroSeries(this.#overrun, [{ route }])
    const series = new RouteSeries(
      {
        requests: this.#requests,
        exceeded: this.#exceeded,
        clientClosed: this.#clientClosed,
        answeredLate: this.#answeredLate,
        budget: this.#budget,
      },
      route,
      method,
    )
    if (routes === undefined) {
      routes = new Map()
      this.#seen.set(method, routes)
    }
    routes.set(route, series)
    return series
  }

  /** Creates the series of a route known in advance at 0. */
  known(route: string, method: string): void {
    this.#see(this.#labelOf(route, route), method)
  }

  /**
   * The series of a finished request. Most traffic repeats the route just seen:
   * for it, the Express route object, mount path and method are compared
   * instead of building the label.
   */
  seriesOf(req: MountedRequest): RouteSeries {
    const route = req.route
    const last = this.#last
    if (route !== undefined && last !== undefined && last.route === route && last.base === req.baseUrl && last.method === req.method) {
      return last.series
    }
    const base = mountOf(req)
    const series = this.#see(this.#routeOf(req, base), methodLabel(req.method))
    // A mount path recovered from the URL is this request's own (a router mounted on `/t/:tenant`).
    if (route !== undefined && base === req.baseUrl) this.#last = { route, base, method: req.method, series }
    return series
  }

  /** A request finished (or was abandoned); called once per request. */
  finished(route: string, method: string, budgetMs: number, fromHeader: boolean): void {
    this.#see(this.#labelOf(route, route), method).finished(budgetMs, fromHeader)
  }

  exceeded(route: string, method: string, reason: ExceededReason): void {
    this.#see(this.#labelOf(route, route), method).exceeded(reason)
  }

  clientClosed(route: string, method: string): void {
    this.#see(this.#labelOf(route, route), method).clientClosed()
  }

  lateWrite(route: string): void {
    incSeries(this.#lateWrites, { route })
  }

  overrun(route: string, ms: number): void {
    observeSeries(this.#overrun, { route }, ms / 1_000)
  }

  headerRejected(reason: 'invalid' | 'expired'): void {
    incSeries(this.#headerRejected, { reason })
  }
}
