import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import {
  describeValue,
  functionOption,
  type MetricsOptions,
  methodLabel,
  metricsTarget,
  numberOption,
  objectOption,
  oneOfOption,
  propertyKey,
  stringOption,
} from '@ballast/core'
import { type AbortWatcher, Deadline, offDeadlineAbort, onDeadlineAbort } from './deadline.js'
import { DeadlineMetrics, type ExceededReason } from './deadline-metrics.js'
import { ClientClosedError, DeadlineExceededError, rootDeadlineSource } from './errors.js'
import { DEFAULT_TIMEOUT_HEADER, parseTimeout } from './timeout-header.js'

declare global {
  // Express's own extension point for request properties (@types/express).
  namespace Express {
    interface Request {
      /** The request's deadline, set by the `deadline()` middleware; see {@link requestDeadline}. */
      deadline?: Deadline
    }
  }
}

/**
 * What `onTimeout` gets: the request, the response (nothing sent yet) and the
 * reason. Node's types by default; annotate the parameters with the framework's
 * own (Express's `Request` and `Response`) and {@link deadline} takes them up.
 *
 * @example
 * ```ts
 * const onTimeout: TimeoutHandler<Request, Response> = (_req, res) => res.status(503).json({ retry: true })
 * ```
 */
export type TimeoutHandler<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse> = (
  req: Req,
  res: Res,
  error: DeadlineExceededError,
) => void

/**
 * Options of {@link deadline}.
 *
 * @example
 * ```ts
 * const options: DeadlineMiddlewareOptions = { timeout: 500, status: 503, routes: ['GET /orders/:id'] }
 * app.use(deadline(options))
 * ```
 */
export interface DeadlineMiddlewareOptions<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse>
  extends MetricsOptions {
  /** Route budget in ms, required, `>= 1`; above 2^31-1 no timer is armed. */
  timeout: number
  /**
   * Inbound header carrying the caller's remaining budget in ms (1..10 digits),
   * default `request-timeout-ms`; `false` to ignore callers' budgets.
   */
  header?: string | false | undefined
  /** Status of the timeout response, default 504. */
  status?: 503 | 504 | undefined
  /**
   * Sends the timeout response instead of the default JSON body; called at most
   * once per request, synchronously, on a response stripped of the handler's body,
   * encoding and caching headers. If it throws without sending headers, the default
   * response follows; a response it started and left unfinished is ended as a
   * handler's would be.
   */
  onTimeout?: TimeoutHandler<Req, Res> | undefined
  /**
   * Routes known in advance, as `'METHOD /template'` (`'GET /orders/:id'`), whose
   * series are created at 0 at construction. Others get theirs on first request.
   */
  routes?: readonly string[] | undefined
}

type Next = (error?: unknown) => void
/** Where a response stands: ended by the handler, its connection gone, or still to be answered. */
type ResponseState = 'ended' | 'gone' | 'open'
type DeadlineRequest = IncomingMessage & { deadline?: Deadline; route?: { path?: unknown }; baseUrl?: string }

interface Settings {
  readonly timeout: number
  readonly header: string | false
  readonly status: number
  readonly onTimeout: TimeoutHandler | undefined
  readonly metrics: DeadlineMetrics
}

const OWNER = 'deadline()'
function ignore(): void {}
const INHERITED = { inherited: true } as const
const LOCAL = {} as const
const KNOWN_ROUTE = /^[A-Za-z]+ \S+$/
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/
// Headers the handler may have set for the answer it meant to send (its body,
// encoding and caching): the timeout response has none of them. The others
// (CORS, request ids, cookies, a draining server's Connection: close) stay.
const HANDLER_REPRESENTATION = new Set([
  'accept-ranges',
  'age',
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-range',
  'content-type',
  'etag',
  'expires',
  'last-modified',
  'trailer',
  'transfer-encoding',
])
// How long a response cut short after its headers may take to flush what was written before its connection is destroyed.
const CUT_SHORT_FLUSH_MS = 1_000
// Shared by every copy of this package, so a nested deadline() from another copy still only shrinks.
const STATE = Symbol.for('ballast.deadline.request')

/**
 * Per-request bookkeeping: the deadlines (outermost first), the settings of the
 * innermost deadline() that set one, and what happened, reported on 'close'.
 * It is its deadlines' abort watcher and is found from the response on 'close',
 * so a request costs this one object and no closure.
 */
class RequestState implements AbortWatcher {
  readonly req: DeadlineRequest
  readonly res: ServerResponse
  readonly root: Deadline
  // The innermost deadline, and the ones nested deadline()s added below the root.
  current: Deadline
  nested: Deadline[] | undefined = undefined
  readonly metrics: DeadlineMetrics
  // The budget the request runs under and where it came from: a shorter nested deadline() replaces them.
  budget: number
  fromHeader: boolean
  settings: Settings
  answered = false
  answeredAt = 0
  overrunSeen = false
  exceeded: ExceededReason | undefined = undefined
  clientClosed = false
  answeredLate = false
  // A deadline of the request aborted (for any reason): remaining() 0 then says nothing about time.
  abortHeard = false
  // The response as it stood when the deadline aborted, before its signal's listeners
  // (the handler's own reaction) ran: see deadlineAborting().
  responseAtAbort: ResponseState | undefined = undefined

  constructor(req: DeadlineRequest, res: ServerResponse, root: Deadline, settings: Settings, budget: number, fromHeader: boolean) {
    this.req = req
    this.res = res
    this.root = root
    this.current = root
    this.settings = settings
    this.metrics = settings.metrics
    this.budget = budget
    this.fromHeader = fromHeader
  }

  /** Watches `deadline` and makes it the request's deadline. */
  adopt(deadline: Deadline, settings: Settings): void {
    if (deadline !== this.current) {
      this.current = deadline
      this.nested ??= []
      this.nested.push(deadline)
    }
    this.settings = settings
    this.req.deadline = deadline
    onDeadlineAbort(deadline, this)
  }

  deadlineAborting(): void {
    if (!this.answered) this.responseAtAbort = this.#responseState()
  }

  deadlineAborted(reason: unknown): void {
    this.abortHeard = true
    const atAbort = this.responseAtAbort ?? this.#responseState()
    this.responseAtAbort = undefined
    // A client that went away is reported on 'close'; any other cancel is the handler's business.
    if (this.answered || !(reason instanceof DeadlineExceededError)) return
    const { res } = this
    // The connection went first (Node reports it on 'close', maybe after this): a client that
    // left, nothing to answer and nothing more to run.
    if (atAbort === 'gone') {
      this.answered = true
      this.clientClosed = true
      // The deadline that ran out may be a nested one: what listens on the outer ones hears it too.
      this.root.cancel(new ClientClosedError())
      return
    }
    this.answered = true
    this.answeredAt = performance.now()
    // The handler's response won the race: nothing to answer, nothing exceeded.
    if (atAbort === 'ended') return
    this.exceeded = rootDeadlineSource(reason) === 'inherited' ? 'inherited' : 'deadline'
    // The handler reacting to its deadline's signal ended or destroyed the response itself (an
    // answer of its own, a pipeline given the signal): its deadline was exceeded all the same.
    if (res.writableEnded || res.destroyed) return
    if (!res.headersSent) this.#respond(reason)
    else this.#endStarted()
    this.#silence()
  }

  #responseState(): ResponseState {
    const { req, res } = this
    if (res.writableEnded) return 'ended'
    // Node 22 does not mark destroyed a response left queued on a connection that closed.
    return res.destroyed || (res.socket === null && req.socket.destroyed) ? 'gone' : 'open'
  }

  /**
   * Ends a response whose headers are out, keeping the connection for the next
   * request. One that declared a `content-length` its body will not reach would
   * desynchronise a reused connection: it is cut instead, the connection closed
   * once what was written is flushed (the client sees a short body), within a
   * second even if the client stopped reading.
   */
  #endStarted(): void {
    const { req, res } = this
    if (!res.hasHeader('content-length') || req.method === 'HEAD') {
      res.end()
      return
    }
    // Headers written by writeHead() alone are not on the wire yet.
    res.flushHeaders()
    const socket = res.socket
    if (socket !== null) closeOnceFlushed(socket)
    // Queued behind a pipelined response still going out: Node hands this one the
    // socket, and writes what it holds for it, once those ahead are done. (Destroying
    // the response now would, on Node 24, leave it on the socket unfinished for good.)
    else res.once('socket', (assigned) => process.nextTick(closeOnceFlushed, assigned))
  }

  #respond(error: DeadlineExceededError): void {
    const { res, settings } = this
    for (const name of res.getHeaderNames()) {
      if (HANDLER_REPRESENTATION.has(name)) res.removeHeader(name)
    }
    const onTimeout = settings.onTimeout
    if (onTimeout !== undefined) {
      try {
        const result: unknown = onTimeout(this.req, res, error)
        // An async handler: what it sends later is dropped like a late write, and its rejection must not go unhandled.
        if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function')
          (result as PromiseLike<unknown>).then(undefined, ignore)
      } catch {
        // Falls through to the default answer below: the client gets exactly one response.
      }
      if (res.writableEnded) return
      if (res.headersSent) {
        this.#endStarted()
        return
      }
    }
    const body = JSON.stringify({ error: { code: error.code, message: error.message } })
    res.statusCode = settings.status
    res.setHeader('content-type', 'application/json; charset=utf-8')
    res.setHeader('content-length', Buffer.byteLength(body))
    res.end(body)
  }

  /**
   * After the timeout response, the still-running handler's writes, ends and
   * header changes become counted no-ops, and `headersSent` reads false so that
   * a late `next(error)` reaches Express's final handler as a plain (dropped)
   * response instead of destroying the keep-alive socket. The response still says
   * what went out (status, and `headersSent` while it reports `finish` and `close`)
   * to an access log.
   */
  #silence(): void {
    const res = this.res as ServerResponse & Record<string, unknown>
    const late = (ending: boolean, args: unknown[]): void => {
      const route = this.metrics.seriesOf(this.req).route
      this.metrics.lateWrite(route)
      if (ending && !this.overrunSeen) {
        this.overrunSeen = true
        this.metrics.overrun(route, performance.now() - this.answeredAt)
      }
      const callback = args.findLast((arg) => typeof arg === 'function') as (() => void) | undefined
      if (callback !== undefined) process.nextTick(callback)
    }
    res.write = (...args: unknown[]) => {
      late(false, args)
      return true
    }
    res.end = (...args: unknown[]) => {
      late(true, args)
      return res
    }
    res.writeHead = () => {
      late(false, [])
      return res
    }
    const ignore = () => res
    res.setHeader = ignore
    res.appendHeader = ignore
    res.removeHeader = () => undefined
    res.flushHeaders = () => undefined
    // Except while the response reports its end ('finish', 'close'), when an access log reads what went out.
    let reporting = false
    const emit = res.emit
    res.emit = function reportingEmit(this: ServerResponse, event: string | symbol, ...args: unknown[]): boolean {
      if (event !== 'finish' && event !== 'close') return emit.call(this, event, ...args)
      const outer = reporting
      reporting = true
      try {
        return emit.call(this, event, ...args)
      } finally {
        reporting = outer
      }
    }
    Object.defineProperty(res, 'headersSent', { configurable: true, get: () => reporting })
    // What went out stays what the response says (an access log reads it): a late res.status(500), or
    // the final handler's for a late next(error), changes nothing.
    const { statusCode, statusMessage } = res
    Object.defineProperty(res, 'statusCode', { configurable: true, get: () => statusCode, set: ignore })
    Object.defineProperty(res, 'statusMessage', { configurable: true, get: () => statusMessage, set: ignore })
  }

  /** The handler ended the response (res.end(), synchronously): late if its deadline had passed unheard. */
  prefinished(): void {
    // After its deadline, before the deadline's timer ran (a busy loop): the answer goes out as written.
    if (!this.answered && !this.abortHeard && this.current.remaining() === 0) this.answeredLate = true
  }

  /** The response closed: finished, or abandoned by the client. */
  closed(): void {
    const { req, res, metrics } = this
    if (!this.answered && !res.writableEnded) {
      this.clientClosed = true
      this.root.cancel(new ClientClosedError())
    }
    const series = metrics.seriesOf(req)
    series.finished(this.budget, this.fromHeader)
    if (this.exceeded !== undefined) {
      series.exceeded(this.exceeded)
      if (!req.complete) abortWithConnection(req)
    }
    if (this.clientClosed) series.clientClosed()
    else if (this.answeredLate) series.answeredLate()
    const nested = this.nested
    if (nested !== undefined) {
      for (let i = nested.length - 1; i >= 0; i--) {
        const deadline = nested[i] as Deadline
        deadline[Symbol.dispose]()
        offDeadlineAbort(deadline, this)
      }
    }
    this.root[Symbol.dispose]()
    offDeadlineAbort(this.root, this)
  }
}

// On a socket: the last request on it whose timeout response went out before its body
// was read (one per socket: a request after it means its body had all arrived).
const UPLOAD = Symbol('ballast.deadline.upload')
type UploadSocket = Socket & { [UPLOAD]?: IncomingMessage | null }

/**
 * The timeout response went out before the request body was read. Node then leaves
 * the request to whatever still reads it (an upload parser writing a file), and tells
 * it nothing when the connection goes: aborted here, so that reader hears it
 * ('aborted', then 'close') and frees what it holds. One listener per socket, however
 * many of its requests time out.
 */
function abortWithConnection(req: IncomingMessage): void {
  const socket = req.socket as UploadSocket | null
  if (socket === null || socket.destroyed) {
    abortUpload(req)
    return
  }
  if (socket[UPLOAD] === undefined) socket.once('close', onUploadSocketClose)
  socket[UPLOAD] = req
  // Read to its end after all: the socket lets it go (the listener stays for the next one).
  req.once('end', () => {
    if (socket[UPLOAD] === req) socket[UPLOAD] = null
  })
}

function onUploadSocketClose(this: UploadSocket): void {
  const req = this[UPLOAD]
  this[UPLOAD] = null
  if (req) abortUpload(req)
}

/** As Node aborts a request whose client left: `aborted`, and an ECONNRESET error for its listeners. */
function abortUpload(req: IncomingMessage): void {
  if (!req.complete && !req.destroyed) req.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }))
}

/** Closes `socket` once what was written to it is flushed, or after CUT_SHORT_FLUSH_MS if the client stopped reading. */
function closeOnceFlushed(socket: Socket): void {
  socket.destroySoon()
  // A timer of its own, not socket.setTimeout(): that would also fire the server's and the response's 'timeout'.
  const flushed = setTimeout(() => socket.destroy(), CUT_SHORT_FLUSH_MS).unref()
  socket.once('close', () => clearTimeout(flushed))
}

// One listener function of each kind for every response; Node links each response to
// its request. 'prefinish' comes inside res.end() (once the response holds its last
// bytes, before they are flushed), when the handler answers.
function onResponsePrefinish(this: ServerResponse): void {
  ;(this.req as DeadlineRequest & { [STATE]?: RequestState })[STATE]?.prefinished()
}

// 'close' comes once, after 'finish' or on an early disconnect.
function onResponseClose(this: ServerResponse): void {
  ;(this.req as DeadlineRequest & { [STATE]?: RequestState })[STATE]?.closed()
}

/**
 * The deadline the `deadline()` middleware gave a request (also set as
 * `req.deadline`, which this reads without needing a type augmentation), or
 * `undefined` when no `deadline()` ran for it.
 *
 * @example
 * ```ts
 * app.get('/report', async (req, res) => {
 *   const rows = await db.query(sql, { signal: requestDeadline(req)?.signal })
 *   res.json(rows)
 * })
 * ```
 */
export function requestDeadline(req: object): Deadline | undefined {
  return (req as { [STATE]?: RequestState })[STATE]?.current
}

/**
 * Express middleware (4 and 5) giving every request a {@link Deadline}:
 * `min(timeout, the caller's request-timeout-ms header, the enclosing deadline)`,
 * available as `req.deadline` and `Deadline.current()` for the rest of the chain.
 *
 * When it runs out: its signal aborts with a {@link DeadlineExceededError}, and
 * exactly one response goes out (504 JSON by default, or `onTimeout`'s), without
 * the body, encoding and caching headers the handler had set; if the handler had
 * already sent headers, the response is ended (or, when it declared a
 * `content-length` it did not reach, cut and its connection closed). Whatever the
 * handler writes afterwards, or passes to `next`, is dropped and counted, and the
 * keep-alive connection stays usable. A client that disconnects aborts the signal
 * with {@link ClientClosedError}. A caller budget already spent is answered
 * before the next middleware runs. Placed again on a route, it can only shrink
 * the deadline. One timer per request, cleared when the response closes.
 *
 * @example
 * ```ts
 * app.use(deadline({ timeout: 2_000 }))
 * app.get('/orders/:id', deadline({ timeout: 500 }), async (req, res) => {
 *   const order = await fetch(`${ORDERS}/${req.params.id}`, { signal: req.deadline?.signal ?? null })
 *   res.json(await order.json())
 * })
 * ```
 */
export function deadline<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse>(
  options: DeadlineMiddlewareOptions<Req, Res>,
): (req: Req, res: Res, next: (error?: unknown) => void) => void {
  const given = objectOption<DeadlineMiddlewareOptions>(OWNER, 'options', options, [
    'timeout',
    'header',
    'status',
    'onTimeout',
    'routes',
    'registry',
    'prefix',
  ])
  if (given === undefined) throw new TypeError(`${OWNER}: options with a "timeout" are required, got undefined`)
  if (given.timeout === undefined) throw new TypeError(`${OWNER}: option "timeout" must be a number >= 1, got undefined`)
  const timeout = numberOption(OWNER, 'timeout', given.timeout, 0, { min: 1 })
  const header =
    given.header === false
      ? false
      : propertyKey(stringOption(OWNER, 'header', given.header, DEFAULT_TIMEOUT_HEADER, HEADER_NAME).toLowerCase())
  const status = oneOfOption(OWNER, 'status', given.status, [503, 504] as const, 504)
  const onTimeout = functionOption<TimeoutHandler>(OWNER, 'onTimeout', given.onTimeout)
  const target = metricsTarget(OWNER, given)
  const routes = given.routes
  if (routes !== undefined && (!Array.isArray(routes) || !routes.every((route) => typeof route === 'string' && KNOWN_ROUTE.test(route)))) {
    throw new TypeError(`${OWNER}: option "routes" must be an array of 'METHOD /template' strings, got ${describeValue(routes)}`)
  }
  const metrics = new DeadlineMetrics(target)
  for (const route of routes ?? []) {
    const space = route.indexOf(' ')
    metrics.known(route.slice(space + 1), methodLabel(route.slice(0, space)))
  }
  const settings: Settings = { timeout, header, status, onTimeout, metrics }

  return function deadlineMiddleware(incoming: IncomingMessage, res: ServerResponse, next: Next): void {
    const req = incoming as DeadlineRequest & { [STATE]?: RequestState }
    const state = req[STATE]
    if (state !== undefined) {
      nest(state, settings, next)
      return
    }
    let budget = timeout
    let fromHeader = false
    if (header !== false) {
      const raw = req.headers[header]
      if (raw !== undefined) {
        const parsed = typeof raw === 'string' ? parseTimeout(raw, timeout) : undefined
        if (parsed === undefined) settings.metrics.headerRejected('invalid')
        else if (parsed < timeout) {
          budget = parsed
          fromHeader = true
          if (parsed === 0) settings.metrics.headerRejected('expired')
        }
      }
    }
    const enclosing = Deadline.current()
    const options = fromHeader ? INHERITED : LOCAL
    const root = enclosing === undefined ? Deadline.after(budget, options) : enclosing.child(budget, options)
    const created = new RequestState(req, res, root, settings, budget, fromHeader)
    req[STATE] = created
    res.on('close', onResponseClose)
    res.on('prefinish', onResponsePrefinish)
    created.adopt(root, settings)
    // A spent budget has been answered by adopt(): the rest of the chain never runs.
    // A deadline aborted for another reason (an enclosing one cancelled) is the handler's to see.
    if (!created.answered) root.run(next)
  }
}

function nest(state: RequestState, settings: Settings, next: Next): void {
  const current = state.current
  if (state.answered || settings.timeout >= current.remaining()) {
    // Not shorter: keep the enclosing deadline, but restore it as current, which
    // an event-driven middleware in between (a body parser) may have lost.
    if (!state.answered) current.run(next)
    return
  }
  const child = current.child(settings.timeout)
  state.budget = settings.timeout
  state.fromHeader = false
  state.adopt(child, settings)
  if (!state.answered) child.run(next)
}
