import { AsyncResource } from 'node:async_hooks'
import { setMaxListeners } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { constants } from 'node:os'
import {
  booleanOption,
  describeValue,
  functionOption,
  type MetricsOptions,
  metricsTarget,
  numberOption,
  objectOption,
  stringOption,
  timerDelay,
} from '@ballast/core'
import {
  type CloseReason,
  ConnectionTracker,
  closeWhenListening,
  type DrainableServer,
  type FlushVerdict,
  type ListenerClosePolicy,
} from './connection-tracker.js'
import { observeDrain } from './drain-metrics.js'
import { DrainHookTimeoutError, DrainingError, GracePeriodExceededError } from './errors.js'
import { DrainEvent } from './events.js'
import { ExitCode } from './exit-codes.js'

/**
 * Where a {@link Drain} is in its life.
 *
 * @example
 * ```ts
 * if (drain.state !== 'serving') res.setHeader('retry-after', '1')
 * ```
 */
export type DrainState = 'serving' | 'draining' | 'closing' | 'stopped'

/**
 * How a shutdown ended; each maps to one {@link ExitCode}.
 *
 * @example
 * ```ts
 * const { outcome } = await drain.shutdown()  // 'ok' | 'hook_failed' | 'grace_period_exceeded' | 'second_signal'
 * ```
 */
export type ShutdownOutcome = 'ok' | 'hook_failed' | 'grace_period_exceeded' | 'second_signal'

/**
 * Outcome of one shutdown hook.
 *
 * @example
 * ```ts
 * drain.onHookEnd(({ name, outcome }) => { if (outcome !== 'ok') alert(name) })
 * ```
 */
export type HookOutcome = 'ok' | 'failed' | 'timed_out'

/**
 * What happened to one hook; `abandoned` when the grace period ended while it ran.
 *
 * @example
 * ```ts
 * const failed = (await drain.shutdown()).hooks.filter((hook) => hook.outcome !== 'ok')
 * ```
 */
export interface HookReport {
  readonly name: string
  readonly outcome: HookOutcome | 'abandoned'
  readonly durationMs: number
  readonly error?: unknown
}

/**
 * The result of {@link Drain.shutdown}.
 *
 * @example
 * ```ts
 * const drain = new Drain({ signals: false, exit: false })
 * const report = await drain.shutdown('deploy')
 * console.log(report.outcome, report.exitCode, Math.round(report.durationMs))
 * ```
 */
export interface ShutdownReport {
  readonly reason: string
  readonly outcome: ShutdownOutcome
  readonly exitCode: number
  /** From the start of the shutdown to its end. */
  readonly durationMs: number
  /** Hooks in the order they ran. */
  readonly hooks: readonly HookReport[]
  /**
   * Sockets of the attached servers destroyed because the grace period (or a second
   * signal) cut the drain short (a server not attached is not followed: its requests
   * cut at the middleware are not counted).
   */
  readonly forcedConnections: number
}

/**
 * A pino-, bunyan- or console-compatible logger: `(fields, message)`.
 *
 * @example
 * ```ts
 * const drain = new Drain({ logger: pino() })
 * ```
 */
export interface DrainLogger {
  info(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}

/**
 * Options of {@link Drain}.
 *
 * @example
 * ```ts
 * const options: DrainOptions = { gracePeriod: 15_000, readinessDelay: 5_000, signals: ['SIGTERM'] }
 * ```
 */
export interface DrainOptions extends MetricsOptions {
  /** Hard limit from the first signal to the exit, in ms. Default `25_000`. */
  gracePeriod?: number | undefined
  /**
   * Time spent `draining` (readiness 503, still serving) before the listeners close, so
   * load balancers stop routing here; must be `< gracePeriod`. Default on Kubernetes
   * (`KUBERNETES_SERVICE_HOST` set): `5_000`, or half of `gracePeriod` if that is less;
   * elsewhere `0`.
   */
  readinessDelay?: number | undefined
  /** How long an idle keep-alive socket may still bring a request once closing. Default `250`. */
  idleLinger?: number | undefined
  /** Default timeout of a shutdown hook, in ms. Default `5_000`. */
  hookTimeout?: number | undefined
  /**
   * Signals that start the shutdown; `false` for none. Names of `os.constants.signals`,
   * SIGKILL and SIGSTOP excluded (they cannot be caught). Default `['SIGTERM', 'SIGINT']`.
   */
  signals?: readonly NodeJS.Signals[] | false | undefined
  /** `true`: `process.exit(code)` at the end; a function: called with the code; `false`: nothing. Default: `true` when signals are handled. */
  exit?: boolean | ((code: number) => void) | undefined
  /** Default `console`; `false` for silence. */
  logger?: DrainLogger | false | undefined
}

/**
 * Options of {@link Drain.onShutdown}.
 *
 * @example
 * ```ts
 * drain.onShutdown('postgres', () => pool.end(), { timeout: 5_000 })
 * ```
 */
export interface HookOptions {
  /** Abort the hook's signal and move on after this many ms. Default: the drain's `hookTimeout`. */
  timeout?: number | undefined
}

/**
 * Payload of {@link Drain.onStateChange}.
 *
 * @example
 * ```ts
 * drain.onStateChange(({ from, to, reason }) => logger.info({ from, to, reason }, 'drain state'))
 * ```
 */
export interface StateChangeEvent {
  readonly from: DrainState
  readonly to: DrainState
  readonly reason: string
}

/**
 * Payload of {@link Drain.onHookEnd}.
 *
 * @example
 * ```ts
 * drain.onHookEnd(({ name, durationMs }) => console.log(name, durationMs))
 * ```
 */
export interface HookEndEvent {
  readonly name: string
  readonly outcome: HookOutcome
  readonly durationMs: number
  readonly error?: unknown
}

interface Hook {
  readonly name: string
  readonly run: (signal: AbortSignal) => unknown
  readonly timeout: number
}

const OWNER = 'Drain'
/**
 * A signal within this many ms of the first one is the same stop delivered twice, not
 * an impatient second signal: Ctrl+C reaches the whole process group and `node --watch`
 * forwards it too, a cluster primary forwards SIGTERM to workers that also got it from
 * systemd's control group, `tini -g` and `dumb-init` signal the group. Any handled
 * signal counts (a terminal's SIGINT and a primary's forwarded SIGTERM differ). A person
 * pressing Ctrl+C again to force the exit is slower than this.
 */
export const DUPLICATE_SIGNAL_WINDOW_MS = 500
/**
 * A listener closes only once, for this long, no connection was accepted and no
 * response told a client to reconnect (`Connection: close`)...
 */
const LISTENER_QUIET_MS = 50
/** ...or, if clients keep connecting, at the first flush after this long. */
const SETTLE_MAX_MS = 250
const CLOSE: FlushVerdict = { close: true }
const HOOK_NAME = /^[A-Za-z0-9_.:-]{1,64}$/
/** Default `readinessDelay` on Kubernetes, capped at half of `gracePeriod`. */
const K8S_READINESS_DELAY = 5_000
/** Signal names this platform knows; process.on() takes any other name as a plain event. */
const KNOWN_SIGNALS: Readonly<Record<string, number>> = constants.signals
/** The kernel delivers these to no handler: listening for them fails. */
const UNCATCHABLE_SIGNALS: ReadonlySet<string> = new Set(['SIGKILL', 'SIGSTOP'])
const SILENT: DrainLogger = { info() {}, warn() {}, error() {} }
const CONSOLE: DrainLogger = {
  info: (fields, message) => console.info(message, fields),
  warn: (fields, message) => console.warn(message, fields),
  error: (fields, message) => console.error(message, fields),
}
const EXIT_CODES: Record<ShutdownOutcome, number> = {
  ok: ExitCode.OK,
  hook_failed: ExitCode.HOOK_FAILED,
  grace_period_exceeded: ExitCode.GRACE_PERIOD_EXCEEDED,
  second_signal: ExitCode.SECOND_SIGNAL,
}

/**
 * Graceful shutdown that drops no request: on the first signal the service keeps
 * serving while readiness says 503 (`draining`), then stops accepting and closes its
 * connections as they become idle (`closing`), waits for in-flight requests and
 * tracked work, runs shutdown hooks in reverse order, each under its own timeout,
 * and exits. `gracePeriod` is a hard limit; a second signal exits at once (a first
 * signal during a {@link Drain.shutdown} started by the application is only noted, and
 * signals within {@link DUPLICATE_SIGNAL_WINDOW_MS} of the first are the same delivery).
 *
 * @example
 * ```ts
 * const app = express()
 * const drain = new Drain({ gracePeriod: 25_000 })
 * app.use(drain.middleware())
 * app.get('/readyz', drain.readiness())
 * app.get('/livez', drain.liveness())
 * drain.attach(app.listen(8080))
 * drain.onShutdown('postgres', () => pool.end(), { timeout: 5_000 })
 * ```
 */
export class Drain implements Disposable {
  readonly gracePeriod: number
  readonly readinessDelay: number
  readonly idleLinger: number
  readonly hookTimeout: number

  readonly #signals: readonly NodeJS.Signals[]
  readonly #exit: ((code: number) => void) | undefined
  readonly #logger: DrainLogger
  readonly #controller = new AbortController()
  readonly #trackers: ConnectionTracker[] = []
  readonly #hooks: Hook[] = []
  /** Hooks not run yet, the last registered on top: one registered while hooks run runs next. */
  readonly #pendingHooks: Hook[] = []
  #hooksEnded = false
  readonly #stateChange: DrainEvent<StateChangeEvent>
  readonly #connectionClose: DrainEvent<{ reason: CloseReason }>
  readonly #reject: DrainEvent<{ reason: string }>
  readonly #hookEnd: DrainEvent<HookEndEvent>
  readonly #hookRegistered: DrainEvent<{ name: string }>
  readonly #onSignal = (signal: NodeJS.Signals) => this.#signal(signal)
  readonly #metrics: Disposable

  #state: DrainState = 'serving'
  /** Whether responses carry `Connection: close` (see #closeGroup for when they do not). */
  #announce = false
  /** While front listeners close, requests wait here instead of sending clients off to reconnect. */
  #holding = false
  #held: (() => void)[] = []
  #inflight = 0
  #tracked = 0
  /** Servers attached once `closing` whose connections are not all gone yet. */
  #lateServers = 0
  #openConnections = 0
  #startedAt: number | undefined
  /** performance.now() when draining started, and when the drain stopped: the wall clock may step meanwhile. */
  #startedMono: number | undefined
  #stoppedMono: number | undefined
  #idleWaiters: (() => void)[] = []
  #shutdown: Promise<ShutdownReport> | undefined
  #finish: ((report: ShutdownReport) => void) | undefined
  #hardLimit: NodeJS.Timeout | undefined
  /** performance.now() at which gracePeriod ends, once a shutdown started. */
  #graceEndsAt = Number.POSITIVE_INFINITY
  #phaseTimer: NodeJS.Timeout | undefined
  #wakePhase: (() => void) | undefined
  #finished = false
  /** performance.now() of the first signal: only a signal after it (and its duplicates) forces the exit. */
  #firstSignalAt: number | undefined
  #duplicateLogged = false
  #httpDrained = false
  #hookReports: HookReport[] = []
  #runningHook: { name: string; controller: AbortController; startedAt: number; abandon: () => void } | undefined
  #forced = 0
  #reason = ''

  constructor(options: DrainOptions = {}) {
    objectOption(OWNER, 'options', options, [
      'gracePeriod',
      'readinessDelay',
      'idleLinger',
      'hookTimeout',
      'signals',
      'exit',
      'logger',
      'registry',
      'prefix',
    ])
    this.gracePeriod = numberOption(OWNER, 'gracePeriod', options.gracePeriod, 25_000, { min: 1, max: 2 ** 31 - 1 })
    const onKubernetes = typeof process.env.KUBERNETES_SERVICE_HOST === 'string' && process.env.KUBERNETES_SERVICE_HOST !== ''
    // A default must never make the options the user did pass invalid: with a short
    // gracePeriod the Kubernetes default shrinks to half of it, leaving the other half
    // for in-flight requests and hooks. Only an explicit value can be out of range.
    const defaultReadinessDelay = onKubernetes ? Math.min(K8S_READINESS_DELAY, Math.floor(this.gracePeriod / 2)) : 0
    this.readinessDelay = numberOption(OWNER, 'readinessDelay', options.readinessDelay, defaultReadinessDelay, { min: 0 })
    if (this.readinessDelay >= this.gracePeriod) {
      throw new RangeError(
        `${OWNER}: option "readinessDelay" must be < gracePeriod (${this.gracePeriod}), got ${describeValue(this.readinessDelay)}`,
      )
    }
    this.idleLinger = numberOption(OWNER, 'idleLinger', options.idleLinger, 250, { min: 0, max: 60_000 })
    this.hookTimeout = numberOption(OWNER, 'hookTimeout', options.hookTimeout, 5_000, { min: 1 })
    this.#signals = signalsOption(options.signals)
    this.#exit = exitOption(options.exit, this.#signals.length > 0)
    this.#logger = loggerOption(options.logger)
    const target = metricsTarget(OWNER, options)
    // Every open SSE stream, long poll and WebSocket may listen to the signal at once:
    // Node 22.12 would warn of a leak past 10 listeners.
    setMaxListeners(0, this.#controller.signal)

    const reportListenerError = (error: unknown) => this.#logger.error({ err: error }, 'drain event listener threw')
    this.#stateChange = new DrainEvent('Drain.onStateChange', reportListenerError)
    this.#connectionClose = new DrainEvent('Drain.onConnectionClose', reportListenerError)
    this.#reject = new DrainEvent('Drain.onReject', reportListenerError)
    this.#hookEnd = new DrainEvent('Drain.onHookEnd', reportListenerError)
    this.#hookRegistered = new DrainEvent('Drain.onHookRegistered', reportListenerError)
    // Metrics only subscribe to the public events and getters below.
    this.#metrics = observeDrain(this, target)
    // Last, and all or nothing: a constructor that throws must not leave a listener
    // behind, through which a later signal would shut down (and exit) a drain the
    // application never got.
    const installed: NodeJS.Signals[] = []
    try {
      for (const signal of this.#signals) {
        process.on(signal, this.#onSignal)
        installed.push(signal)
      }
    } catch (error) {
      for (const signal of installed) process.removeListener(signal, this.#onSignal)
      this.#metrics[Symbol.dispose]()
      throw error
    }
  }

  /** Where the drain is: `serving` → `draining` → `closing` → `stopped`. */
  get state(): DrainState {
    return this.#state
  }

  /** Aborted (with a {@link DrainingError}) as soon as draining starts: stop long polls, SSE, loops. */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** Requests inside {@link middleware} that have not finished. */
  get inflight(): number {
    return this.#inflight
  }

  /** Promises given to {@link track} that have not settled. */
  get tracked(): number {
    return this.#tracked
  }

  /** Open connections on attached servers. */
  get openConnections(): number {
    return this.#openConnections
  }

  /** Epoch ms (`Date.now()`) when draining started, if it did. */
  get startedAt(): number | undefined {
    return this.#startedAt
  }

  /**
   * Milliseconds since draining started, by the process's monotonic clock
   * (`performance.now()`): 0 while serving, and once stopped the drain's whole
   * duration (the report's `durationMs`), so a drain that stopped in time never
   * reads as a long one. Unlike `Date.now() - startedAt` it does not move when the
   * wall clock is stepped, and unlike an age a monitoring system computes from
   * {@link startedAt} with its own clock it does not depend on the two clocks agreeing.
   *
   * @example
   * ```ts
   * drain.onShutdown('db', async () => {
   *   logger.info({ drainingMs: drain.elapsedMs }, 'HTTP drained, closing the pool')
   *   await pool.end()
   * })
   * ```
   */
  get elapsedMs(): number {
    if (this.#startedMono === undefined) return 0
    return (this.#stoppedMono ?? performance.now()) - this.#startedMono
  }

  /** Fires on every state transition. */
  onStateChange(listener: (event: StateChangeEvent) => void): Disposable {
    return this.#stateChange.on(listener)
  }

  /** Fires when the drain closes a connection, or sees one end after a `Connection: close` response. */
  onConnectionClose(listener: (event: { reason: CloseReason }) => void): Disposable {
    return this.#connectionClose.on(listener)
  }

  /** Fires when {@link middleware} answers 503 because HTTP was already drained (hooks running, or stopped). */
  onReject(listener: (event: { reason: string }) => void): Disposable {
    return this.#reject.on(listener)
  }

  /** Fires when a shutdown hook finished, failed or timed out. */
  onHookEnd(listener: (event: HookEndEvent) => void): Disposable {
    return this.#hookEnd.on(listener)
  }

  /** Names of the registered hooks, in registration order. */
  get hooks(): readonly string[] {
    return this.#hooks.map((hook) => hook.name)
  }

  /**
   * Follows a server's connections. With several servers, the last one attached
   * (typically the metrics server) keeps answering through the whole drain, hooks
   * included, and closes just before the exit; the others close together.
   *
   * A server attached once the shutdown has started (a signal during an async
   * start-up) is adopted: while `draining` it drains and closes with the others (never
   * as the last one); once `closing` it closes right away and the hooks wait for it;
   * once HTTP is drained or the drain stopped, it is closed at once (as soon as it
   * listens), with Node's own `server.close()`.
   *
   * @example
   * ```ts
   * await pool.query('SELECT 1') // a SIGTERM may arrive meanwhile: attach() still works
   * drain.attach(app.listen(8080))
   * ```
   */
  attach(server: DrainableServer): this {
    if (
      typeof server !== 'object' ||
      server === null ||
      typeof (server as Partial<DrainableServer>).prependListener !== 'function' ||
      typeof (server as Partial<DrainableServer>).closeAllConnections !== 'function'
    ) {
      throw new TypeError(`${OWNER}: attach() needs an http.Server or https.Server, got ${describeValue(server)}`)
    }
    if (this.#trackers.some((tracker) => tracker.server === server)) return this
    if (this.#httpDrained || this.#finished) {
      // Its requests would only get 503s, or meet closed resources: it must not serve.
      closeWhenListening(server)
      return this
    }
    const tracker = new ConnectionTracker(
      server,
      {
        connectionOpened: () => {
          this.#openConnections++
          if (this.#shutdown !== undefined) this.#overran()
        },
        connectionClosed: (reason) => {
          this.#openConnections--
          if (reason !== undefined) this.#connectionClose.emit({ reason })
          if (this.#shutdown !== undefined) this.#overran()
        },
        announcing: () => this.#announce,
      },
      this.idleLinger,
    )
    this.#trackers.push(tracker)
    if (this.#state === 'draining') tracker.startDraining()
    if (this.#state === 'closing') {
      // The others' listeners are closing or closed already.
      this.#lateServers++
      void tracker.drained().then(() => {
        this.#lateServers--
        this.#checkIdle()
      })
    }
    return this
  }

  /**
   * Counts in-flight requests and, once draining, answers with `Connection: close` so
   * clients stop reusing the connection. While the listeners close it holds new
   * requests and runs them right after (see #closeGroup). Mount it first.
   */
  middleware(): (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void {
    return (req, res, next) => this.#handle(req, res, next)
  }

  /** `GET /readyz`: 200 while serving, 503 from the moment draining starts. */
  readiness(): (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void {
    return (_req, res) => {
      const serving = this.#state === 'serving'
      res.statusCode = serving ? 200 : 503
      res.setHeader('content-type', 'text/plain; charset=utf-8')
      res.setHeader('cache-control', 'no-store')
      res.end(serving ? 'ok\n' : `${this.#state}\n`)
    }
  }

  /** `GET /livez`: 200 until the process exits; a draining process must not be restarted. */
  liveness(): (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void {
    return (_req, res) => {
      res.statusCode = 200
      res.setHeader('content-type', 'text/plain; charset=utf-8')
      res.setHeader('cache-control', 'no-store')
      res.end('ok\n')
    }
  }

  /**
   * Registers a hook that runs once HTTP is drained, in reverse registration order
   * (last opened, first closed). Each runs under its own timeout with a signal that
   * aborts at that timeout; a hook that throws, rejects or hangs is logged, counted,
   * and the next one runs. A hook registered while hooks run (a client created by
   * one of them) runs next; once the hooks have run, registering throws, since the
   * hook could never run.
   */
  onShutdown(name: string, hook: (signal: AbortSignal) => unknown, options: HookOptions = {}): this {
    if (typeof name !== 'string') throw new TypeError(`${OWNER}: option "name" must be a string, got ${describeValue(name)}`)
    stringOption(OWNER, 'name', name, undefined, HOOK_NAME)
    if (typeof hook !== 'function') throw new TypeError(`${OWNER}: option "hook" must be a function, got ${describeValue(hook)}`)
    objectOption(OWNER, 'options', options, ['timeout'])
    const timeout = numberOption(OWNER, 'timeout', options.timeout, this.hookTimeout, { min: 1 })
    if (this.#hooks.some((existing) => existing.name === name)) {
      throw new RangeError(`${OWNER}: option "name" must be unique, got ${describeValue(name)} twice`)
    }
    if (this.#hooksEnded) {
      throw new Error(
        `${OWNER}: onShutdown(${describeValue(name)}) called after the shutdown hooks ran (state ${this.#state}): it would never run`,
      )
    }
    const entry = { name, run: hook, timeout }
    this.#hooks.push(entry)
    this.#pendingHooks.push(entry)
    this.#hookRegistered.emit({ name })
    return this
  }

  /** Fires when a hook is registered (metrics create its series at zero). */
  onHookRegistered(listener: (event: { name: string }) => void): Disposable {
    return this.#hookRegistered.on(listener)
  }

  /** Keeps the shutdown waiting (before hooks) until `work` settles; returns `work`. */
  track<T>(work: PromiseLike<T>): PromiseLike<T> {
    if (work === null || typeof (work as Partial<PromiseLike<T>>)?.then !== 'function') {
      throw new TypeError(`${OWNER}: track() needs a promise, got ${describeValue(work)}`)
    }
    this.#tracked++
    const settle = () => {
      this.#tracked--
      this.#checkIdle()
    }
    Promise.resolve(work).then(settle, settle)
    return work
  }

  /** Starts the shutdown (if not already started) and resolves with its report. */
  shutdown(reason = 'shutdown()'): Promise<ShutdownReport> {
    if (this.#shutdown !== undefined) return this.#shutdown
    // Armed before any listener, abort handler or hook runs: nothing user code does can
    // push the exit past gracePeriod.
    const startedAt = performance.now()
    this.#hardLimit = setTimeout(() => {
      this.#hardLimit = undefined
      this.#expire(startedAt)
    }, this.gracePeriod)
    this.#graceEndsAt = startedAt + this.gracePeriod
    this.#reason = reason
    this.#startedAt = Date.now()
    this.#startedMono = startedAt
    this.#shutdown = new Promise<ShutdownReport>((resolve) => {
      this.#finish = resolve
    })
    void this.#run(reason, startedAt)
    return this.#shutdown
  }

  /** Removes signal listeners and metric collectors; does not close any server. */
  [Symbol.dispose](): void {
    this.#removeSignalListeners()
    this.#metrics[Symbol.dispose]()
  }

  #removeSignalListeners(): void {
    for (const signal of this.#signals) process.removeListener(signal, this.#onSignal)
  }

  #signal(signal: NodeJS.Signals): void {
    if (this.#finished) return
    const firstAt = this.#firstSignalAt
    if (firstAt === undefined) {
      this.#firstSignalAt = performance.now()
      this.#firstSignal(signal)
    } else if (performance.now() - firstAt < DUPLICATE_SIGNAL_WINDOW_MS) {
      this.#duplicateSignal(signal)
    } else {
      this.#logger.warn({ signal }, 'drain: second signal, exiting now')
      this.#abort('second_signal', this.#startedMono ?? performance.now(), new GracePeriodExceededError(this.gracePeriod))
    }
  }

  #firstSignal(signal: NodeJS.Signals): void {
    if (this.#shutdown === undefined) {
      this.#logger.info({ signal, gracePeriod: this.gracePeriod, readinessDelay: this.readinessDelay }, 'drain: shutting down')
      void this.shutdown(signal)
      return
    }
    // The orchestrator's SIGTERM arriving during a shutdown() started by the
    // application (a deploy hook, an admin endpoint) is its first word, not an
    // impatient repeat: the drain in progress carries on under its gracePeriod.
    this.#logger.info({ signal, reason: this.#reason }, 'drain: signal during shutdown, already draining')
  }

  #duplicateSignal(signal: NodeJS.Signals): void {
    // Several deliveries of one stop (a process group and its forwarder) would
    // otherwise log once per worker and per copy.
    if (this.#duplicateLogged) return
    this.#duplicateLogged = true
    this.#logger.info(
      { signal, windowMs: DUPLICATE_SIGNAL_WINDOW_MS },
      'drain: signal right after the first one, taken as the same delivery and ignored',
    )
  }

  readonly #onResponseClose = (): void => {
    if (this.#shutdown !== undefined) {
      this.#responseClosedWhileDraining()
      return
    }
    this.#inflight--
    this.#checkIdle()
  }

  #responseClosedWhileDraining(): void {
    // A forced stop counted every request still in flight as ended already.
    if (this.#finished) return
    this.#inflight--
    // On a saturated loop the grace period's timer can stay unfired for seconds while
    // responses keep closing: this is where the drain still sees the time.
    if (this.#overran()) return
    this.#checkIdle()
  }

  #handle(req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void {
    if (this.#httpDrained || this.#finished) {
      this.#reject.emit({ reason: this.#reason })
      const error = new DrainingError(this.#reason)
      // The same `{ error: { code, message } }` body as the other ballast answers (the
      // deadline's 504), so clients can tell this 503 from an upstream's.
      const body = JSON.stringify({ error: { code: error.code, message: error.message } })
      res.statusCode = error.status
      res.setHeader('content-type', 'application/json; charset=utf-8')
      res.setHeader('content-length', Buffer.byteLength(body))
      res.setHeader('connection', 'close')
      res.setHeader('retry-after', '1')
      res.end(body)
      req.resume()
      return
    }
    if (res.closed) {
      // Its client left while a middleware ahead of this one ran: the response already
      // emitted its only 'close', so counting it would hold every later drain.
      next()
      return
    }
    this.#inflight++
    // 'close' comes once per response, after 'finish' or on a disconnect: one
    // listener, shared by every request.
    res.on('close', this.#onResponseClose)
    // Only requests with an Expect header can have gone to 'checkContinue' or
    // 'checkExpectation' instead of 'request': the tracker takes those in here.
    const expecting = req.headers.expect !== undefined
    const tracker = expecting || this.#announce ? this.#trackers.find((candidate) => candidate.tracks(req.socket)) : undefined
    if (expecting) tracker?.adopt(req, res)
    if (this.#announce) {
      if (this.#overran()) {
        this.#cut(res)
        return
      }
      // Pipelined behind a response that closes the connection: it could never be answered.
      if (tracker?.cutOff(req, res) === true) return
      // A tracked connection's announcement is its tracker's (the last response on it only).
      if (tracker === undefined && !res.headersSent) res.setHeader('connection', 'close')
    }
    if (this.#holding) {
      if (this.#overran()) {
        this.#cut(res)
        return
      }
      // Held even past the settle bound: the loop, free of their work, is what empties
      // the accept queue so that the listener closes without resetting a connection.
      // A client that gave up meanwhile is not served. Bound to the request's async
      // context: released together from one callback, each must run in its own
      // (the application's AsyncLocalStorage, the trace it belongs to).
      this.#held.push(
        AsyncResource.bind(() => {
          if (res.destroyed || res.writableEnded) return
          if (this.#finished) this.#cut(res)
          else next()
        }),
      )
      return
    }
    next()
  }

  /**
   * Ends a request the stop caught past gracePeriod as the stop ends every connection:
   * destroyed. Those of attached servers are already; one of a server the drain does
   * not follow (its middleware used without attach()) would otherwise never be answered.
   */
  #cut(res: ServerResponse): void {
    res.destroy()
  }

  async #run(reason: string, startedAt: number): Promise<void> {
    try {
      this.#announce = true
      // Chosen now: a server attached while draining closes with the front ones.
      const last = this.#trackers.length > 1 ? this.#trackers.at(-1) : undefined
      this.#setState('draining', reason)
      for (const tracker of this.#trackers) tracker.startDraining()
      this.#controller.abort(new DrainingError(reason))
      if (this.#overran()) return
      await this.#sleep(this.readinessDelay)
      if (this.#overran()) return

      this.#setState('closing', reason)
      // Several servers: the last attached (metrics) keeps answering until the others drained.
      const front = this.#trackers.filter((tracker) => tracker !== last)
      await this.#closeGroup(front, true)
      if (this.#overran()) return
      await this.#idle()
      if (this.#overran()) return
      // From here on a request through the middleware would meet closed resources.
      this.#httpDrained = true
      this.#logger.info({ durationMs: Math.round(performance.now() - startedAt) }, 'drain: HTTP drained, running hooks')

      let failed = false
      // Bounded by gracePeriod (#finished) should hooks keep registering hooks.
      for (let hook = this.#pendingHooks.pop(); hook !== undefined; hook = this.#pendingHooks.pop()) {
        const report = await this.#runHook(hook)
        if (this.#finished) return
        this.#hookReports.push(report)
        if (report.outcome !== 'ok') failed = true
        // A hook that blocked the loop past gracePeriod: the next one must not start.
        if (this.#overran()) return
      }
      this.#hooksEnded = true
      // The last of several servers (metrics) answered scrapes through the whole drain.
      if (last !== undefined) await this.#closeGroup([last], false)
      if (this.#overran()) return
      this.#complete(failed ? 'hook_failed' : 'ok', startedAt)
    } catch (error) {
      // A bug here must still end in an exit, never in a process that hangs half-closed.
      this.#logger.error({ err: error }, 'drain: shutdown sequence failed')
      this.#complete('hook_failed', startedAt)
    }
  }

  /**
   * Closes listeners so that no client is reset. The kernel completes TCP handshakes
   * on its own and resets every connection still waiting in the accept queue when
   * the listener closes; libuv accepts only one connection per loop iteration, so
   * that queue can be long, and a client that was just told `Connection: close`
   * reconnects within a millisecond. So, for the front servers (`settle`):
   * - requests reaching the middleware are held (not answered) and responses stop
   *   announcing `Connection: close`: no client is sent off to reconnect;
   * - each tracker closes its listener only right after its own probe connection
   *   went through the accept queue (see ConnectionTracker#closeListener), when
   *   that flush was clean (nothing else was queued) and no connection was
   *   accepted and no client told to reconnect during the last LISTENER_QUIET_MS
   *   (at the first flush after SETTLE_MAX_MS whatever clients do);
   * - then announcing resumes and the held requests run: their responses carry
   *   `Connection: close`, and their clients' reconnections are refused.
   */
  async #closeGroup(trackers: readonly ConnectionTracker[], settle: boolean): Promise<void> {
    const settleUntil = performance.now() + SETTLE_MAX_MS
    if (settle) {
      this.#holding = true
      this.#announce = false
      for (const tracker of this.#trackers) tracker.refreshAnnouncements()
    }
    let open = trackers.length
    const listenerClosed = () => {
      open--
      if (open === 0 && settle) this.#endSettle()
    }
    try {
      await Promise.all(trackers.map((tracker) => tracker.closeListener(this.#closePolicy(trackers, settleUntil, listenerClosed))))
    } finally {
      if (settle) this.#endSettle()
    }
    if (this.#finished) return
    await Promise.all(trackers.map((tracker) => tracker.drained()))
  }

  /**
   * One tracker's policy (see #closeGroup). Its clock never reads earlier than the end
   * of the last wait it asked for: where setTimeout is faked and performance is not
   * (node:test mock.timers, vitest without `performance` in `toFake`) a wait passes in
   * no real time, and the real clock alone would take hundreds of probes to see 50 ms
   * of quiet. With real timers a wait has passed when its timer fires: nothing changes.
   */
  #closePolicy(trackers: readonly ConnectionTracker[], settleUntil: number, listenerClosed: () => void): ListenerClosePolicy {
    let waitedUntil = 0
    return {
      flushed: ({ clean }) => {
        if (this.#finished) return CLOSE
        const now = Math.max(performance.now(), waitedUntil)
        const last = Math.max(...trackers.map((tracker) => Math.max(tracker.lastAcceptedAt, tracker.lastCloseAnnouncedAt)))
        const quietFor = now - last
        if ((clean && quietFor >= LISTENER_QUIET_MS) || now >= settleUntil) return CLOSE
        if (!clean) return { close: false, retryInMs: 0 }
        const retryInMs = Math.max(1, Math.min(LISTENER_QUIET_MS - quietFor, settleUntil - now))
        waitedUntil = now + retryInMs
        return { close: false, retryInMs }
      },
      listenerClosed,
    }
  }

  /** Announces `Connection: close` again and lets the held requests run (on the next loop turn). */
  #endSettle(): void {
    if (!this.#announce) {
      this.#announce = true
      for (const tracker of this.#trackers) tracker.refreshAnnouncements()
    }
    this.#holding = false
    const held = this.#held.splice(0)
    if (held.length === 0) return
    // Not inside the server's `connection` callback that closed the listener.
    setImmediate(() => {
      for (const run of held) {
        // Each may block the loop (a synchronous handler) past gracePeriod. Read here, the clock
        // then ends the drain, and each later run cuts its request instead of serving it: none is
        // dropped, which would leave those of a server not attached unanswered.
        this.#overran()
        try {
          run()
        } catch (error) {
          // Thrown by a chain that is not Express's (Express catches its handlers' throws):
          // uncaught, as it would have been, once the others have run.
          process.nextTick(() => {
            throw error
          })
        }
      }
    })
  }

  async #runHook(hook: Hook): Promise<HookReport> {
    const controller = new AbortController()
    const started = performance.now()
    let timer: NodeJS.Timeout | undefined
    let stopWaiting: (() => void) | undefined
    // Settles the race below when the drain is cut short: a hook that never settles
    // must not keep its timeout timer (and this sequence) alive after the exit.
    const abandon = () => {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      stopWaiting?.()
    }
    this.#runningHook = { name: hook.name, controller, startedAt: started, abandon }
    let outcome: HookOutcome | 'abandoned'
    let error: unknown
    try {
      const timedOut = new Promise<'timeout' | 'abandoned'>((resolve) => {
        stopWaiting = () => resolve('abandoned')
        const delay = timerDelay(hook.timeout)
        if (delay !== undefined) timer = setTimeout(() => resolve('timeout'), delay)
      })
      const result = await Promise.race([Promise.resolve().then(() => hook.run(controller.signal)), timedOut])
      if (result === 'abandoned') {
        outcome = 'abandoned'
      } else if (result === 'timeout') {
        outcome = 'timed_out'
        error = new DrainHookTimeoutError(hook.name, hook.timeout)
        controller.abort(error)
      } else {
        outcome = 'ok'
      }
    } catch (caught) {
      outcome = 'failed'
      error = caught
    } finally {
      if (timer !== undefined) clearTimeout(timer)
      this.#runningHook = undefined
    }
    const durationMs = performance.now() - started
    // #abort, the only way a hook is abandoned, already reported it.
    if (!this.#finished && outcome !== 'abandoned') {
      if (outcome === 'ok') this.#logger.info({ hook: hook.name, durationMs: Math.round(durationMs) }, 'drain: hook done')
      else this.#logger.error({ hook: hook.name, outcome, err: error, durationMs: Math.round(durationMs) }, 'drain: hook did not succeed')
      this.#hookEnd.emit({ name: hook.name, outcome, durationMs, ...(error === undefined ? {} : { error }) })
    }
    return { name: hook.name, outcome, durationMs, ...(error === undefined ? {} : { error }) }
  }

  /**
   * Whether the drain is over: stopped, or gracePeriod ended by the clock, in which case
   * it stops now as its timer would have. The timer alone is not enough: Node runs only
   * the timers due when a timers phase began, so a loop kept busy (a burst of requests
   * whose work comes due at once) can finish the whole drain before the timer fires.
   */
  #overran(now = performance.now()): boolean {
    if (this.#finished) return true
    if (now < this.#graceEndsAt) return false
    this.#expire(this.#startedMono ?? now)
    return true
  }

  #expire(startedAt: number): void {
    if (this.#finished) return
    this.#logger.error(
      { gracePeriod: this.gracePeriod, inflight: this.#inflight, tracked: this.#tracked, openConnections: this.#openConnections },
      'drain: grace period exceeded, destroying remaining connections',
    )
    this.#abort('grace_period_exceeded', startedAt, new GracePeriodExceededError(this.gracePeriod))
  }

  #abort(outcome: 'grace_period_exceeded' | 'second_signal', startedAt: number, reason: Error): void {
    if (this.#finished) return
    // First: the callbacks below (hook events, connection closes) must see a drain that stopped.
    this.#finished = true
    const running = this.#runningHook
    if (running !== undefined) {
      running.abandon()
      running.controller.abort(reason)
      const durationMs = performance.now() - running.startedAt
      this.#hookReports.push({ name: running.name, outcome: 'abandoned', durationMs })
      // Counted as timed out (the drain's own time ran out while it ran), so the hook
      // that held the exit shows in the hook metrics and events, not in the report only.
      this.#hookEnd.emit({ name: running.name, outcome: 'timed_out', durationMs, error: reason })
    }
    // A destroyed socket emits 'close' (and HTTP closes its response) only on a later
    // loop turn, which a saturated loop may not reach for seconds: the trackers count
    // the sockets as closed now, and every request in flight is over with its socket
    // (its 'close' is then ignored), so a last scrape or push when shutdown() resolves
    // or exit runs sees the end state without waiting for that turn.
    for (const tracker of this.#trackers) this.#forced += tracker.destroyAll()
    this.#inflight = 0
    this.#end(outcome, startedAt, performance.now())
  }

  /** Ends the sequence now with `outcome`, unless gracePeriod ended meanwhile. */
  #complete(outcome: 'ok' | 'hook_failed', startedAt: number): void {
    if (this.#finished) return
    // A drain that took longer than gracePeriod never reports success, even when its
    // timer could not fire (a loop blocked until the drain was done).
    const now = performance.now()
    if (this.#overran(now)) return
    this.#finished = true
    this.#end(outcome, startedAt, now)
  }

  /** Stops at `now`: what the report's duration says is what decided the outcome. */
  #end(outcome: ShutdownOutcome, startedAt: number, now: number): void {
    this.#hooksEnded = true
    if (this.#hardLimit !== undefined) clearTimeout(this.#hardLimit)
    this.#hardLimit = undefined
    if (this.#phaseTimer !== undefined) clearTimeout(this.#phaseTimer)
    this.#wakePhase?.()
    for (const wake of this.#idleWaiters.splice(0)) wake()
    for (const tracker of this.#trackers) tracker.detach()
    this.#stop(outcome, startedAt, now)
  }

  #stop(outcome: ShutdownOutcome, startedAt: number, now: number): void {
    // A later signal is no longer the drain's: with `exit: false` it must end the process as usual.
    this.#removeSignalListeners()
    const exitCode = EXIT_CODES[outcome]
    this.#stoppedMono = now
    const report: ShutdownReport = {
      reason: this.#reason,
      outcome,
      exitCode,
      durationMs: this.#stoppedMono - startedAt,
      hooks: this.#hookReports,
      forcedConnections: this.#forced,
    }
    this.#setState('stopped', this.#reason)
    this.#logger[outcome === 'ok' ? 'info' : 'error'](
      { outcome, exitCode, durationMs: Math.round(report.durationMs), forcedConnections: this.#forced },
      'drain: stopped',
    )
    this.#finish?.(report)
    this.#exit?.(exitCode)
  }

  #setState(to: DrainState, reason: string): void {
    const from = this.#state
    if (from === to) return
    this.#state = to
    this.#stateChange.emit({ from, to, reason })
  }

  #sleep(ms: number): Promise<void> {
    const delay = timerDelay(ms)
    if (delay === 0 || delay === undefined) return Promise.resolve()
    return new Promise<void>((resolve) => {
      this.#wakePhase = resolve
      this.#phaseTimer = setTimeout(() => {
        this.#phaseTimer = undefined
        this.#wakePhase = undefined
        resolve()
      }, delay)
    })
  }

  #idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve()
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
  }

  #checkIdle(): void {
    if (this.#isIdle()) for (const wake of this.#idleWaiters.splice(0)) wake()
  }

  #isIdle(): boolean {
    return this.#inflight === 0 && this.#tracked === 0 && this.#lateServers === 0
  }
}

function signalsOption(value: unknown): readonly NodeJS.Signals[] {
  if (value === undefined) return ['SIGTERM', 'SIGINT']
  if (value === false) return []
  if (!Array.isArray(value) || value.some((signal) => typeof signal !== 'string' || !/^SIG[A-Z0-9]+$/.test(signal))) {
    throw new TypeError(`${OWNER}: option "signals" must be an array of signal names or false, got ${describeValue(value)}`)
  }
  for (const signal of value as string[]) {
    // Checked here, before any listener is installed: process.on() would throw a bare
    // `uv_signal_start EINVAL` for these, and accepts (and never hears) unknown names.
    if (UNCATCHABLE_SIGNALS.has(signal)) {
      throw new RangeError(
        `${OWNER}: option "signals" must not include SIGKILL or SIGSTOP (they cannot be caught), got ${describeValue(value)}`,
      )
    }
    if (!Object.hasOwn(KNOWN_SIGNALS, signal)) {
      throw new RangeError(`${OWNER}: option "signals" must name signals of os.constants.signals, got ${describeValue(signal)}`)
    }
  }
  return [...new Set(value as NodeJS.Signals[])]
}

function exitOption(value: unknown, handlesSignals: boolean): ((code: number) => void) | undefined {
  if (typeof value === 'function') return functionOption<(code: number) => void>(OWNER, 'exit', value)
  if (value !== undefined && typeof value !== 'boolean') {
    throw new TypeError(`${OWNER}: option "exit" must be a boolean or a function, got ${describeValue(value)}`)
  }
  const exit = booleanOption(OWNER, 'exit', value, handlesSignals)
  return exit ? (code) => process.exit(code) : undefined
}

function loggerOption(value: unknown): DrainLogger {
  if (value === undefined) return CONSOLE
  if (value === false) return SILENT
  const logger = value as Partial<DrainLogger> | null
  if (
    typeof logger !== 'object' ||
    logger === null ||
    typeof logger.info !== 'function' ||
    typeof logger.warn !== 'function' ||
    typeof logger.error !== 'function'
  ) {
    throw new TypeError(`${OWNER}: option "logger" must have info, warn and error methods (or be false), got ${describeValue(value)}`)
  }
  // Bound so pino's and console's methods keep their `this`.
  return { info: logger.info.bind(logger), warn: logger.warn.bind(logger), error: logger.error.bind(logger) }
}
