import { AsyncLocalStorage } from 'node:async_hooks'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import express from 'express'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { selfSigned } from '../test/support/certificate.js'
import { RawConnection, rawConnection } from '../test/support/raw-http.js'
import { Drain, type DrainOptions, DUPLICATE_SIGNAL_WINDOW_MS, type ShutdownReport, type StateChangeEvent } from './drain.js'
import { DrainHookTimeoutError, DrainingError, GracePeriodExceededError } from './errors.js'
import { ExitCode } from './exit-codes.js'

const QUIET: DrainOptions = { signals: false, exit: false, logger: false, readinessDelay: 0 }

function listen<S extends http.Server | https.Server>(server: S): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)))
}

function get(
  port: number,
  path: string,
  agent: http.Agent | false = false,
): Promise<{ status: number; connection: string | undefined; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          body += chunk
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body, headers: res.headers }))
      })
      .on('error', reject)
  })
}

/** Sends `signal` to this process and resolves once it was delivered (to every listener). */
function raise(signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    process.once(signal, () => setImmediate(resolve))
    process.kill(process.pid, signal)
  })
}

/** Waits until a signal sent now is no longer a duplicate delivery of the first one. */
function pastDuplicateWindow(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, DUPLICATE_SIGNAL_WINDOW_MS + 50))
}

/** Active resources that outnumber those of `baseline`, by type. */
function leakedResources(baseline: string[]): Record<string, number> {
  const count = (list: string[]) => {
    const counts: Record<string, number> = {}
    for (const type of list) counts[type] = (counts[type] ?? 0) + 1
    return counts
  }
  const [before, now] = [count(baseline), count(process.getActiveResourcesInfo())]
  return Object.fromEntries(Object.entries(now).filter(([type, n]) => n > (before[type] ?? 0)))
}

/** Whether Node's connections-checking interval of an http(s).Server is stopped (it is unref'd: no active resource shows it). */
function connectionsCheckStopped(server: http.Server | https.Server): boolean {
  const key = Object.getOwnPropertySymbols(server).find((symbol) => symbol.description === 'http.server.connectionsCheckingInterval')
  if (key === undefined) throw new Error('this Node has no connections-checking interval')
  return (server as unknown as Record<symbol, { _destroyed: boolean }>)[key]?._destroyed === true
}

function app(drain: Drain) {
  const application = express()
  application.use(drain.middleware())
  application.get('/readyz', drain.readiness())
  application.get('/livez', drain.liveness())
  // Called from an application's own handler, with Express's three arguments.
  application.get('/readyz-within', (req, res, next) => drain.readiness()(req, res, next))
  application.get('/fast', (_req, res) => {
    res.json({ ok: true })
  })
  application.get('/slow', (_req, res) => {
    setTimeout(() => res.json({ ok: true }), 100)
  })
  application.get('/hang', () => {})
  // Answers before reading the body, which Node then reads and discards.
  application.post('/reject', (_req, res) => {
    res.status(401).json({ error: 'unauthorized' })
  })
  return application
}

/** A drain (quiet, with its own registry) attached to a listening server of {@link app}. */
async function servedDrain(options: DrainOptions): Promise<{ drain: Drain; server: http.Server; port: number }> {
  const drain = new Drain({ ...QUIET, registry: new Registry(), ...options })
  const server = http.createServer(app(drain))
  drain.attach(server)
  return { drain, server, port: await listen(server) }
}

describe('options', () => {
  it('refuses an event listener that is no function when it subscribes, not when the event fires', () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    for (const subscribe of ['onStateChange', 'onConnectionClose', 'onReject', 'onHookEnd', 'onHookRegistered'] as const) {
      expect(() => drain[subscribe]('x' as never)).toThrow(new TypeError(`Drain.${subscribe}: "listener" must be a function, got 'x'`))
    }
    drain[Symbol.dispose]()
  })

  it('rejects bad options at construction, naming the option and the value', () => {
    // An option given as undefined is absent (a config value passed through), in the types too.
    const config: { gracePeriod?: number } = {}
    const passed = new Drain({
      ...QUIET,
      gracePeriod: config.gracePeriod,
      idleLinger: undefined,
      hookTimeout: undefined,
      registry: new Registry(),
      prefix: undefined,
    })
    expect(passed.gracePeriod).toBe(25_000)
    passed.onShutdown('passed-through', () => {}, { timeout: undefined })
    passed[Symbol.dispose]()
    expect(() => new Drain({ ...QUIET, gracePeriod: -1 })).toThrow(
      new RangeError('Drain: option "gracePeriod" must be a number >= 1 <= 2147483647, got -1'),
    )
    expect(() => new Drain({ ...QUIET, gracePeriod: '10' as unknown as number })).toThrow(TypeError)
    expect(() => new Drain({ ...QUIET, exit: 'yes' as never })).toThrow(
      new TypeError(`Drain: option "exit" must be a boolean or a function, got 'yes'`),
    )
    expect(() => new Drain({ ...QUIET, gracePeriode: 10 } as never)).toThrow(
      new TypeError('Drain: unknown option "gracePeriode" (did you mean "gracePeriod"?), got 10'),
    )
    expect(() => new Drain({ ...QUIET, registry: new Registry() }).onShutdown('db', () => {}, { timout: 5 } as never)).toThrow(
      /Drain: unknown option "timout" \(did you mean "timeout"\?\)/,
    )
    expect(() => new Drain({ ...QUIET, gracePeriod: 1_000, readinessDelay: 1_000 })).toThrow(
      /readinessDelay.*< gracePeriod \(1000\), got 1000/,
    )
    expect(() => new Drain({ ...QUIET, idleLinger: Number.NaN })).toThrow(/option "idleLinger".*got NaN/)
    expect(() => new Drain({ ...QUIET, signals: ['TERM'] as unknown as NodeJS.Signals[] })).toThrow(/option "signals".*'TERM'/)
    expect(() => new Drain({ ...QUIET, exit: 1 as unknown as boolean })).toThrow(/option "exit" must be a boolean or a function, got 1/)
    expect(() => new Drain({ ...QUIET, logger: {} as never })).toThrow(/option "logger"/)
    expect(() => new Drain({ ...QUIET, registry: {} as never })).toThrow(/option "registry"/)
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    expect(() => drain.onShutdown('bad name!', () => {})).toThrow(/option "name".*'bad name!'/)
    expect(() => drain.onShutdown('x', () => {}, { timeout: 0 })).toThrow(/option "timeout".*got 0/)
    drain.onShutdown('x', () => {})
    expect(() => drain.onShutdown('x', () => {})).toThrow(/unique/)
    expect(() => drain.attach({} as http.Server)).toThrow(TypeError)
    expect(() => drain.track(42 as unknown as Promise<void>)).toThrow(/track\(\) needs a promise, got 42/)
  })

  it('defaults: 25 s grace, readinessDelay 5 s only on Kubernetes, hooks 5 s', () => {
    const saved = process.env.KUBERNETES_SERVICE_HOST
    try {
      delete process.env.KUBERNETES_SERVICE_HOST
      const local = new Drain({ signals: false, logger: false, registry: new Registry() })
      expect([local.gracePeriod, local.readinessDelay, local.hookTimeout, local.idleLinger]).toEqual([25_000, 0, 5_000, 250])
      process.env.KUBERNETES_SERVICE_HOST = '10.0.0.1'
      expect(new Drain({ signals: false, logger: false, registry: new Registry() }).readinessDelay).toBe(5_000)
    } finally {
      if (saved === undefined) delete process.env.KUBERNETES_SERVICE_HOST
      else process.env.KUBERNETES_SERVICE_HOST = saved
    }
  })

  it('on Kubernetes the default readinessDelay fits inside a short gracePeriod (at most half of it); an explicit one is still checked', () => {
    const saved = process.env.KUBERNETES_SERVICE_HOST
    try {
      process.env.KUBERNETES_SERVICE_HOST = '10.0.0.1'
      const delayFor = (gracePeriod: number) =>
        new Drain({ signals: false, exit: false, logger: false, gracePeriod, registry: new Registry() }).readinessDelay
      expect([25_000, 10_000, 5_000, 3_000, 1].map(delayFor)).toEqual([5_000, 5_000, 2_500, 1_500, 0])
      expect(() => new Drain({ ...QUIET, gracePeriod: 5_000, readinessDelay: 5_000, registry: new Registry() })).toThrow(
        new RangeError('Drain: option "readinessDelay" must be < gracePeriod (5000), got 5000'),
      )
      expect(new Drain({ ...QUIET, gracePeriod: 5_000, readinessDelay: 4_000, registry: new Registry() }).readinessDelay).toBe(4_000)
    } finally {
      if (saved === undefined) delete process.env.KUBERNETES_SERVICE_HOST
      else process.env.KUBERNETES_SERVICE_HOST = saved
    }
  })

  it('signals: refuses unknown names and SIGKILL / SIGSTOP, quoting the value', () => {
    expect(() => new Drain({ ...QUIET, signals: ['SIGKILL'], registry: new Registry() })).toThrow(
      new RangeError(`Drain: option "signals" must not include SIGKILL or SIGSTOP (they cannot be caught), got [ 'SIGKILL' ]`),
    )
    expect(() => new Drain({ ...QUIET, signals: ['SIGSTOP'], registry: new Registry() })).toThrow(RangeError)
    expect(() => new Drain({ ...QUIET, signals: ['SIGFOO' as NodeJS.Signals], registry: new Registry() })).toThrow(
      new RangeError(`Drain: option "signals" must name signals of os.constants.signals, got 'SIGFOO'`),
    )
  })

  it('a constructor that throws leaves no signal listener behind: a later signal does not shut down a half-built drain', async () => {
    const before = process.listenerCount('SIGUSR2')
    const codes: number[] = []
    const options = { readinessDelay: 0, exit: (code: number) => codes.push(code), logger: false, registry: new Registry() } as const
    expect(() => new Drain({ ...options, signals: ['SIGUSR2', 'SIGKILL'] })).toThrow(/option "signals".*'SIGKILL'/)
    expect(process.listenerCount('SIGUSR2')).toBe(before)

    // Installing fails midway (as process.on() does for a signal libuv refuses): what was installed is removed.
    const on = process.on.bind(process)
    const spy = vi.spyOn(process, 'on').mockImplementation(((event: string, listener: (...args: unknown[]) => void) => {
      if (event === 'SIGHUP') throw new Error('uv_signal_start EINVAL')
      return on(event, listener)
    }) as typeof process.on)
    try {
      expect(() => new Drain({ ...options, signals: ['SIGUSR2', 'SIGHUP'], registry: new Registry() })).toThrow(/uv_signal_start EINVAL/)
    } finally {
      spy.mockRestore()
    }
    expect(process.listenerCount('SIGUSR2')).toBe(before)
    expect(process.listenerCount('SIGHUP')).toBe(0)

    // The application's own handler is alone: the signal starts no drain and calls no exit.
    // (A drain's shutdown with no server and no hook ends within the microtasks that follow.)
    await raise('SIGUSR2')
    expect(codes).toEqual([])
  })

  it('installs signal listeners only when asked, and removes them on dispose', () => {
    const before = process.listenerCount('SIGUSR2')
    const drain = new Drain({ signals: ['SIGUSR2'], exit: false, logger: false, registry: new Registry() })
    expect(process.listenerCount('SIGUSR2')).toBe(before + 1)
    drain[Symbol.dispose]()
    expect(process.listenerCount('SIGUSR2')).toBe(before)
  })

  it('removes its signal listeners once stopped, so that with exit: false a later signal is not swallowed', async () => {
    const before = process.listenerCount('SIGUSR2')
    const drain = new Drain({ signals: ['SIGUSR2'], exit: false, logger: false, registry: new Registry() })
    expect(process.listenerCount('SIGUSR2')).toBe(before + 1)
    await drain.shutdown()
    expect(process.listenerCount('SIGUSR2')).toBe(before)
    drain[Symbol.dispose]()
  })
})

describe('sequence', () => {
  it('readiness 503 and liveness 200 while draining, Connection: close on every response (also one in progress at the signal), signal aborted', async () => {
    const { drain, server, port } = await servedDrain({ readinessDelay: 300 })
    const agent = new http.Agent({ keepAlive: true })
    expect(await get(port, '/readyz', agent)).toMatchObject({ status: 200, connection: 'keep-alive' })
    // In progress at the signal, answered (after 100 ms) while still draining (300 ms).
    const slowAgent = new http.Agent({ keepAlive: true })
    const inProgress = get(port, '/slow', slowAgent)
    await vi.waitFor(() => expect(drain.inflight).toBe(1), { timeout: 5_000 })

    const states: StateChangeEvent[] = []
    const subscription = drain.onStateChange((event) => states.push(event))
    const shutdown = drain.shutdown('test')
    expect(drain.state).toBe('draining')
    expect(drain.signal.aborted).toBe(true)
    expect(drain.signal.reason).toBeInstanceOf(DrainingError)
    expect(drain.signal.reason.code).toBe('BALLAST_DRAINING')
    expect(drain.shutdown()).toBe(shutdown)

    expect(await get(port, '/readyz', agent)).toMatchObject({ status: 503, connection: 'close' })
    expect(await get(port, '/readyz-within', agent)).toMatchObject({ status: 503, connection: 'close' })
    expect(await get(port, '/livez', agent)).toMatchObject({ status: 200, connection: 'close' })
    expect(await get(port, '/fast', agent)).toMatchObject({ status: 200, connection: 'close' })
    expect(await inProgress).toMatchObject({ status: 200, connection: 'close' })

    const report = await shutdown
    subscription[Symbol.dispose]()
    agent.destroy()
    slowAgent.destroy()
    expect(report).toMatchObject({ reason: 'test', outcome: 'ok', exitCode: ExitCode.OK, forcedConnections: 0 })
    expect(states.map(({ to }) => to)).toEqual(['draining', 'closing', 'stopped'])
    expect(server.listening).toBe(false)
    drain[Symbol.dispose]()
  })

  it('drain.signal takes a listener per open stream: 30 SSE streams end from it, with no leak warning (Node 22.12 warns past 10)', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const application = express()
    application.use(drain.middleware())
    application.get('/events', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: hello\n\n')
      const stop = () => res.end('event: bye\ndata: draining\n\n')
      drain.signal.addEventListener('abort', stop, { once: true })
      res.on('close', () => drain.signal.removeEventListener('abort', stop))
    })
    const server = http.createServer(application)
    drain.attach(server)
    const port = await listen(server)
    const streams = await Promise.all(
      Array.from(
        { length: 30 },
        () =>
          new Promise<{ ended: Promise<string> }>((opened, failed) => {
            http
              .get({ host: '127.0.0.1', port, path: '/events', agent: false }, (res) => {
                let body = ''
                res.setEncoding('utf8')
                const ended = new Promise<string>((resolve) => res.on('end', () => resolve(body)))
                res.on('data', (chunk: string) => {
                  if (body === '') opened({ ended })
                  body += chunk
                })
              })
              .on('error', failed)
          }),
      ),
    )
    expect(drain.inflight).toBe(30)
    const report = await drain.shutdown('test')
    const bodies = await Promise.all(streams.map((stream) => stream.ended))
    await new Promise((resolve) => setImmediate(resolve))
    process.off('warning', onWarning)
    expect(report).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    expect(bodies.every((body) => body.endsWith('event: bye\ndata: draining\n\n'))).toBe(true)
    expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([])
    drain[Symbol.dispose]()
  })

  it('hooks run last-registered first, after in-flight requests and tracked work; failures and timeouts do not stop the others, and are logged and counted', async () => {
    const codes: number[] = []
    const registry = new Registry()
    const logged: { level: 'info' | 'warn' | 'error'; fields: Record<string, unknown>; message: string }[] = []
    const logger = {
      info: (fields: Record<string, unknown>, message: string) => logged.push({ level: 'info', fields, message }),
      warn: (fields: Record<string, unknown>, message: string) => logged.push({ level: 'warn', fields, message }),
      error: (fields: Record<string, unknown>, message: string) => logged.push({ level: 'error', fields, message }),
    }
    const drain = new Drain({ ...QUIET, exit: (code) => codes.push(code), registry, logger })
    const server = http.createServer(app(drain))
    drain.attach(server)
    const port = await listen(server)
    const order: string[] = []
    let timeoutSignal: AbortSignal | undefined
    drain.onShutdown('first', () => {
      order.push('first')
    })
    drain.onShutdown('throws', () => {
      order.push('throws')
      throw new Error('boom')
    })
    drain.onShutdown(
      'hangs',
      (signal) => {
        order.push('hangs')
        timeoutSignal = signal
        return new Promise(() => {})
      },
      { timeout: 50 },
    )
    drain.onShutdown('rejects', async () => {
      order.push(`rejects (in-flight ${drain.inflight}, tracked ${drain.tracked})`)
      throw new Error('nope')
    })
    let trackedDone = false
    void drain.track(new Promise<void>((resolve) => setTimeout(resolve, 150)).then(() => (trackedDone = true)))
    const slow = get(port, '/slow')
    await new Promise((resolve) => setTimeout(resolve, 20))
    const report = await drain.shutdown()
    expect((await slow).status).toBe(200)
    expect(trackedDone).toBe(true)
    expect(order).toEqual(['rejects (in-flight 0, tracked 0)', 'hangs', 'throws', 'first'])
    expect(report.hooks.map(({ name, outcome }) => [name, outcome])).toEqual([
      ['rejects', 'failed'],
      ['hangs', 'timed_out'],
      ['throws', 'failed'],
      ['first', 'ok'],
    ])
    expect(timeoutSignal?.aborted).toBe(true)
    expect(timeoutSignal?.reason).toBeInstanceOf(DrainHookTimeoutError)
    expect(timeoutSignal?.reason).toMatchObject({ name: 'DrainHookTimeoutError', hook: 'hangs', timeout: 50 })
    // The hung hook is cut at its own 50 ms timeout, not at the drain's default (seconds).
    expect(drain.hookTimeout).toBeGreaterThanOrEqual(50 + 1_000)
    const hung = report.hooks.find(({ name }) => name === 'hangs')
    expect(hung?.durationMs).toBeGreaterThanOrEqual(45)
    expect(hung?.durationMs).toBeLessThan(50 + 1_000)
    expect(report.outcome).toBe('hook_failed')
    expect(codes).toEqual([ExitCode.HOOK_FAILED])

    // Counted: one observation per hook, under its own outcome, none under the others.
    const counts = (await registry.metrics())
      .split('\n')
      .map((line) => /^ballast_drain_hook_duration_seconds_count\{hook="([^"]*)",outcome="([^"]*)"\} (\S+)$/.exec(line))
      .filter((match) => match !== null)
      .map(([, hook, outcome, value]) => [hook, outcome, Number(value)])
      .sort()
    expect(counts).toEqual(
      [
        ['first', 'ok', 1],
        ['first', 'failed', 0],
        ['first', 'timed_out', 0],
        ['throws', 'ok', 0],
        ['throws', 'failed', 1],
        ['throws', 'timed_out', 0],
        ['hangs', 'ok', 0],
        ['hangs', 'failed', 0],
        ['hangs', 'timed_out', 1],
        ['rejects', 'ok', 0],
        ['rejects', 'failed', 1],
        ['rejects', 'timed_out', 0],
      ].sort(),
    )
    // Logged: one error-level entry per failed or timed-out hook, naming it; none for the one that succeeded.
    const hookErrors = logged.filter(({ level, fields }) => level === 'error' && fields.hook !== undefined)
    expect(hookErrors.map(({ fields, message }) => [fields.hook, fields.outcome, message])).toEqual([
      ['rejects', 'failed', 'drain: hook did not succeed'],
      ['hangs', 'timed_out', 'drain: hook did not succeed'],
      ['throws', 'failed', 'drain: hook did not succeed'],
    ])
    expect(hookErrors.map(({ fields }) => (fields.err as Error).message)).toEqual([
      'nope',
      'Shutdown hook "hangs" did not finish within 50 ms',
      'boom',
    ])
    expect(hookErrors[1]?.fields.err).toBe(timeoutSignal?.reason)
    drain[Symbol.dispose]()
  })

  it('a request whose client left while a middleware ahead of the drain ran is not counted in flight', async () => {
    const drain = new Drain({ ...QUIET, gracePeriod: 2_000, registry: new Registry() })
    const application = express()
    // An async middleware (a session store, an auth call) that is still running when the client leaves.
    application.use((_req, res, next) => {
      res.once('close', () => next())
    })
    application.use(drain.middleware())
    let handled = false
    application.get('/left', (_req, res) => {
      handled = true
      res.end()
    })
    const server = http.createServer(application)
    drain.attach(server)
    const port = await listen(server)
    const request = http.get({ host: '127.0.0.1', port, path: '/left' })
    request.on('error', () => {})
    server.once('request', () => setImmediate(() => request.destroy()))
    await vi.waitFor(() => expect(handled).toBe(true), { timeout: 5_000 })
    expect(drain.inflight).toBe(0)
    const report = await drain.shutdown()
    expect(report).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    drain[Symbol.dispose]()
  })

  it('a hook registered while hooks run runs next (last registered, first run); once the hooks ran, registering throws', async () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const ran: string[] = []
    drain.onShutdown('logger', () => {
      ran.push('logger')
    })
    drain.onShutdown('cache', () => {
      ran.push('cache')
      // A client created during the shutdown registers its own close.
      drain.onShutdown('late', () => {
        ran.push('late')
      })
    })
    const report = await drain.shutdown()
    expect(ran).toEqual(['cache', 'late', 'logger'])
    expect(report.hooks.map(({ name, outcome }) => [name, outcome])).toEqual([
      ['cache', 'ok'],
      ['late', 'ok'],
      ['logger', 'ok'],
    ])
    expect(drain.hooks).toEqual(['logger', 'cache', 'late'])
    expect(() => drain.onShutdown('too-late', () => {})).toThrow(
      new Error(`Drain: onShutdown('too-late') called after the shutdown hooks ran (state stopped): it would never run`),
    )
    drain[Symbol.dispose]()
  })

  it('gracePeriod destroys a never-ending request and aborts the running hook', async () => {
    const drain = new Drain({ ...QUIET, gracePeriod: 300, registry: new Registry() })
    const server = http.createServer(app(drain))
    drain.attach(server)
    const port = await listen(server)
    const hung = get(port, '/hang').then(
      () => 'answered',
      (error: NodeJS.ErrnoException) => error.code ?? error.message,
    )
    await new Promise((resolve) => setTimeout(resolve, 20))
    const started = performance.now()
    const report = await drain.shutdown()
    const elapsed = performance.now() - started
    expect(report).toMatchObject({ outcome: 'grace_period_exceeded', exitCode: ExitCode.GRACE_PERIOD_EXCEEDED, forcedConnections: 1 })
    expect(await hung).toBe('ECONNRESET')
    expect(elapsed).toBeGreaterThanOrEqual(290)
    expect(elapsed).toBeLessThan(300 + 1_000)

    const registry2 = new Registry()
    const drain2 = new Drain({ ...QUIET, gracePeriod: 100, registry: registry2 })
    const ended: { name: string; outcome: string }[] = []
    drain2.onHookEnd(({ name, outcome }) => ended.push({ name, outcome }))
    let hookSignal: AbortSignal | undefined
    drain2.onShutdown(
      'stuck',
      (signal) => {
        hookSignal = signal
        return new Promise(() => {})
      },
      { timeout: 60_000 },
    )
    const report2 = await drain2.shutdown()
    expect(report2.hooks).toMatchObject([{ name: 'stuck', outcome: 'abandoned' }])
    expect(hookSignal?.reason).toBeInstanceOf(GracePeriodExceededError)
    expect(hookSignal?.reason).toMatchObject({ name: 'GracePeriodExceededError', gracePeriod: 100 })
    // The hook that held the exit is in the hook metrics and events, counted as timed out.
    expect(ended).toEqual([{ name: 'stuck', outcome: 'timed_out' }])
    expect(await registry2.metrics()).toMatch(/ballast_drain_hook_duration_seconds_count\{hook="stuck",outcome="timed_out"\} 1\n/)
    drain[Symbol.dispose]()
    drain2[Symbol.dispose]()
  })

  it('connections destroyed at gracePeriod are counted (forced, open, in-flight) when shutdown() resolves and when exit runs', async () => {
    const registry = new Registry()
    /** The counts as a scrape (or a last push) would read them at this very moment: nothing runs in between but promise jobs. */
    const snapshot = async () => {
      const getters = { openConnections: drain.openConnections, inflight: drain.inflight }
      const metrics = await registry.getMetricsAsJSON()
      const value = (name: string, labels: Record<string, string> = {}) =>
        metrics
          .find((metric) => metric.name === name)
          ?.values.find((sample) => Object.entries(labels).every(([key, label]) => sample.labels[key] === label))?.value
      return {
        ...getters,
        ballast_drain_closed_connections_total_forced: value('ballast_drain_closed_connections_total', { reason: 'forced' }),
        ballast_drain_open_connections: value('ballast_drain_open_connections'),
        ballast_drain_inflight_requests: value('ballast_drain_inflight_requests'),
      }
    }
    let atExit: ReturnType<typeof snapshot> | undefined
    // An idle linger longer than the grace period: the idle keep-alive socket is still open at the deadline.
    const drain = new Drain({ ...QUIET, gracePeriod: 300, idleLinger: 60_000, registry, exit: () => (atExit = snapshot()) })
    const server = http.createServer(app(drain))
    drain.attach(server)
    const port = await listen(server)
    const agent = new http.Agent({ keepAlive: true })
    expect(await get(port, '/fast', agent)).toMatchObject({ status: 200, connection: 'keep-alive' })
    const hung = get(port, '/hang').then(
      () => 'answered',
      (error: NodeJS.ErrnoException) => error.code ?? error.message,
    )
    await vi.waitFor(() => expect([drain.openConnections, drain.inflight]).toEqual([2, 1]), { timeout: 5_000 })

    const report = await drain.shutdown()
    const atResolve = await snapshot()
    const final = {
      openConnections: 0,
      inflight: 0,
      ballast_drain_closed_connections_total_forced: 2,
      ballast_drain_open_connections: 0,
      ballast_drain_inflight_requests: 0,
    }
    expect(report).toMatchObject({ outcome: 'grace_period_exceeded', forcedConnections: 2 })
    expect(atResolve).toEqual(final)
    expect(await atExit).toEqual(final)
    expect(await hung).toBe('ECONNRESET')
    agent.destroy()
    drain[Symbol.dispose]()
  })
})

/** Blocks the event loop for `ms`, as a handler's synchronous work does. */
function spin(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // The loop is the point.
  }
}

describe('a loop blocked past gracePeriod', () => {
  it('by in-flight handlers whose work comes due at once: the drain stops (exit 4) at the first response past gracePeriod, not after the work', async () => {
    const gracePeriod = 300
    const work = 150
    const exits: { code: number; done: number; inflight: number; openConnections: number }[] = []
    const done: number[] = []
    const drain: Drain = new Drain({
      ...QUIET,
      gracePeriod,
      registry: new Registry(),
      exit: (code) => exits.push({ code, done: done.length, inflight: drain.inflight, openConnections: drain.openConnections }),
    })
    const queued: (() => void)[] = []
    const application = express()
    application.use(drain.middleware())
    application.get('/work', (_req, res) => {
      queued.push(() => {
        spin(work)
        done.push(performance.now())
        res.json({ ok: true })
      })
    })
    const server = http.createServer(application)
    drain.attach(server)
    const port = await listen(server)
    const requests = Array.from({ length: 6 }, () =>
      get(port, '/work').then(
        ({ status }) => status,
        (error: NodeJS.ErrnoException) => error.code ?? error.message,
      ),
    )
    await vi.waitFor(() => expect(drain.inflight).toBe(requests.length), { timeout: 5_000 })

    const shutdown = drain.shutdown()
    // All in one check phase, each its own callback, as a saturated server's burst of
    // continuations runs in one timers phase: the grace period's timer cannot fire
    // before the last one, 900 ms of work on, and the drain would wait for more turns.
    for (const run of queued) setImmediate(run)
    const report = await shutdown
    const settled = await Promise.all(requests)
    console.info(
      `[drain blocked loop] stopped after ${Math.round(report.durationMs)} ms, ${exits[0]?.done} of 6 handlers done; clients: ${settled}`,
    )

    expect(report).toMatchObject({ outcome: 'grace_period_exceeded', exitCode: ExitCode.GRACE_PERIOD_EXCEEDED })
    expect(report.durationMs).toBeGreaterThanOrEqual(gracePeriod)
    expect(exits).toHaveLength(1)
    // The second handler ends 300 ms (gracePeriod) into the work at the earliest: the
    // drain stops in its response's callback, with 4 handlers still to run.
    expect(exits[0]).toEqual({ code: ExitCode.GRACE_PERIOD_EXCEEDED, done: 2, inflight: 0, openConnections: 0 })
    expect(done).toHaveLength(6)
    drain[Symbol.dispose]()
  })

  it('a request reaching the middleware of a server not attached, once past gracePeriod, is cut like the connections the stop destroys, not left unanswered', async () => {
    const drain = new Drain({ ...QUIET, readinessDelay: 250, gracePeriod: 300, registry: new Registry() })
    const middleware = drain.middleware()
    const attached = http.createServer((req, res) => middleware(req, res, () => res.end('attached')))
    drain.attach(attached)
    await listen(attached)
    // The loop blocked past gracePeriod just before the middleware sees the request: its
    // timer cannot have fired, and this request is the first to see the time.
    const other = http.createServer((req, res) => {
      spin(350)
      middleware(req, res, () => res.end('served'))
    })
    const port = await listen(other)
    const shutdown = drain.shutdown()
    const answer = await get(port, '/x').then(
      ({ status }) => status,
      (error: NodeJS.ErrnoException) => error.code ?? error.message,
    )
    expect(await shutdown).toMatchObject({ outcome: 'grace_period_exceeded' })
    expect(answer).toBe('ECONNRESET')
    other.closeAllConnections()
    await new Promise((resolve) => other.close(resolve))
    drain[Symbol.dispose]()
  })

  it('by a hook, so that the drain would end before its timer fires: reported grace_period_exceeded (exit 4), never ok', async () => {
    const codes: number[] = []
    const gracePeriod = 1_000
    const { drain } = await servedDrain({ gracePeriod, exit: (code) => codes.push(code) })
    const ran: string[] = []
    drain.onShutdown('next', () => {
      ran.push('next')
    })
    drain.onShutdown('blocks', () => {
      ran.push('blocks')
      spin(gracePeriod + 100)
    })
    const report = await drain.shutdown()
    expect(report).toMatchObject({ outcome: 'grace_period_exceeded', exitCode: ExitCode.GRACE_PERIOD_EXCEEDED, forcedConnections: 0 })
    expect(report.durationMs).toBeGreaterThanOrEqual(gracePeriod + 100)
    expect(report.hooks).toMatchObject([{ name: 'blocks', outcome: 'ok' }])
    // No hook starts once gracePeriod is over.
    expect(ran).toEqual(['blocks'])
    expect(codes).toEqual([ExitCode.GRACE_PERIOD_EXCEEDED])
    drain[Symbol.dispose]()
  })
})

describe('signals after shutdown()', () => {
  it('a first signal during shutdown() is only noted: the drain completes; a signal after it forces the exit', async () => {
    const codes: number[] = []
    const drain = new Drain({ ...QUIET, signals: ['SIGUSR2'], exit: (code) => codes.push(code), registry: new Registry() })
    const states: string[] = []
    drain.onStateChange(({ to }) => states.push(to))
    let release: () => void = () => {}
    drain.onShutdown('waits', () => new Promise<void>((resolve) => (release = resolve)))
    const shutdown = drain.shutdown('deploy')
    // The orchestrator's SIGTERM, after the application started the shutdown itself.
    await raise('SIGUSR2')
    expect(drain.state).not.toBe('stopped')
    release()
    const report = await shutdown
    expect(report).toMatchObject({ reason: 'deploy', outcome: 'ok', exitCode: ExitCode.OK, forcedConnections: 0 })
    expect(report.hooks.map(({ name, outcome }) => [name, outcome])).toEqual([['waits', 'ok']])
    expect(codes).toEqual([ExitCode.OK])
    // One shutdown, not two.
    expect(states).toEqual(['draining', 'closing', 'stopped'])
    drain[Symbol.dispose]()

    const codes2: number[] = []
    const drain2 = new Drain({ ...QUIET, signals: ['SIGUSR2'], exit: (code) => codes2.push(code), registry: new Registry() })
    drain2.onShutdown('hangs', () => new Promise(() => {}), { timeout: 60_000 })
    const shutdown2 = drain2.shutdown('deploy')
    await raise('SIGUSR2')
    expect(drain2.state).not.toBe('stopped')
    await pastDuplicateWindow()
    await raise('SIGUSR2')
    expect(await shutdown2).toMatchObject({ reason: 'deploy', outcome: 'second_signal', exitCode: ExitCode.SECOND_SIGNAL })
    expect(codes2).toEqual([ExitCode.SECOND_SIGNAL])
    drain2[Symbol.dispose]()
  })

  it('a signal-started shutdown still exits at once on the second signal', async () => {
    const codes: number[] = []
    const drain = new Drain({ ...QUIET, signals: ['SIGUSR2'], exit: (code) => codes.push(code), registry: new Registry() })
    drain.onShutdown('hangs', () => new Promise(() => {}), { timeout: 60_000 })
    const before = performance.now()
    await raise('SIGUSR2')
    expect(drain.state).not.toBe('stopped')
    await pastDuplicateWindow()
    await raise('SIGUSR2')
    const after = performance.now()
    expect(drain.state).toBe('stopped')
    expect(codes).toEqual([ExitCode.SECOND_SIGNAL])
    const report = await drain.shutdown()
    expect(report).toMatchObject({
      reason: 'SIGUSR2',
      outcome: 'second_signal',
      hooks: [{ name: 'hangs', outcome: 'abandoned' }],
    })
    // From the first signal, which started the shutdown, not from the second.
    expect(report.durationMs).toBeGreaterThanOrEqual(DUPLICATE_SIGNAL_WINDOW_MS)
    expect(report.durationMs).toBeLessThanOrEqual(after - before)
    expect(drain.elapsedMs).toBe(report.durationMs)
    drain[Symbol.dispose]()
  })

  it('signals right after the first one are the same delivery: ignored, logged once, whichever signal they are', async () => {
    const codes: number[] = []
    const logs: string[] = []
    const logger = { info: (_: object, message: string) => logs.push(message), warn: () => {}, error: () => {} }
    const drain = new Drain({
      ...QUIET,
      logger,
      signals: ['SIGUSR2', 'SIGHUP'],
      exit: (code) => codes.push(code),
      registry: new Registry(),
    })
    let release: () => void = () => {}
    const released = new Promise<void>((resolve) => (release = resolve))
    drain.onShutdown('waits', () => released)
    const firstAt = performance.now()
    await raise('SIGUSR2')
    await raise('SIGUSR2')
    await raise('SIGHUP')
    // Still inside the window, or the test shows nothing.
    expect(performance.now() - firstAt).toBeLessThan(DUPLICATE_SIGNAL_WINDOW_MS)
    expect(drain.state).not.toBe('stopped')
    expect(logs.filter((message) => message.includes('same delivery'))).toHaveLength(1)
    release()
    expect(await drain.shutdown()).toMatchObject({ reason: 'SIGUSR2', outcome: 'ok', exitCode: ExitCode.OK })
    expect(codes).toEqual([ExitCode.OK])
    drain[Symbol.dispose]()
  })
})

describe('servers', () => {
  let dir: string
  let key: Buffer
  let cert: Buffer
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ballast-drain-'))
    ;({ key, cert } = await selfSigned())
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  /** A drain attached to a listening https server, and the tlsClientError codes the server reports. */
  async function httpsDrain(options: DrainOptions) {
    const registry = new Registry()
    const drain = new Drain({ ...QUIET, registry, ...options })
    const server = https.createServer({ key, cert }, app(drain))
    drain.attach(server)
    const port = await listen(server)
    const clientErrors: string[] = []
    server.on('tlsClientError', (error: NodeJS.ErrnoException) => clientErrors.push(error.code ?? error.message))
    return { registry, drain, server, port, clientErrors }
  }

  it('drains an https server: keep-alive response, then Connection: close, idle TLS socket closed', async () => {
    const { registry, drain, server, port, clientErrors } = await httpsDrain({ idleLinger: 50 })
    const agent = new https.Agent({ keepAlive: true, ca: cert })
    const request = (path: string) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path, agent, ca: cert }, (res) => {
            res.resume()
            res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }))
          })
          .on('error', reject)
      })
    // Two sockets: one will be busy at the signal, the other idle.
    expect(await Promise.all([request('/fast'), request('/fast')])).toEqual([
      { status: 200, connection: 'keep-alive' },
      { status: 200, connection: 'keep-alive' },
    ])
    expect(drain.openConnections).toBe(2)
    const slow = request('/slow')
    await new Promise((resolve) => setTimeout(resolve, 20))
    const report = await drain.shutdown()
    expect(await slow).toEqual({ status: 200, connection: 'close' })
    expect(report.outcome).toBe('ok')
    expect(drain.openConnections).toBe(0)
    const closed = await registry.getSingleMetric('ballast_drain_closed_connections_total')?.get()
    const byReason = Object.fromEntries((closed?.values ?? []).map(({ labels, value }) => [labels.reason, value]))
    expect(byReason).toEqual({ idle: 1, after_response: 1, forced: 0 })
    expect(connectionsCheckStopped(server)).toBe(true)
    // The documented trace of the listener probe on a TLS server: one ECONNRESET per probe.
    expect(clientErrors.length).toBeGreaterThanOrEqual(1)
    expect(new Set(clientErrors)).toEqual(new Set(['ECONNRESET']))
    agent.destroy()
    drain[Symbol.dispose]()
  })

  it('a server attached once closing is closed at once and the hooks wait for it; one attached once stopped is closed as soon as it listens', async () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const server = http.createServer(app(drain))
    drain.attach(server)
    const port = await listen(server)
    const slow = get(port, '/slow')
    await vi.waitFor(() => expect(drain.inflight).toBe(1), { timeout: 5_000 })
    const closing = new Promise<void>((resolve) => drain.onStateChange(({ to }) => to === 'closing' && resolve()))
    const shutdown = drain.shutdown()
    await closing
    expect(drain.inflight).toBe(1)
    // As `drain.attach(app.listen(port))` does it: attached before it is bound.
    const late = http.createServer(app(drain))
    drain.attach(late.listen(0, '127.0.0.1'))
    const lateClosed = new Promise((resolve) => late.once('close', resolve))
    let listeningDuringHook: boolean | undefined
    drain.onShutdown('check', () => {
      listeningDuringHook = late.listening
    })
    const report = await shutdown
    expect((await slow).status).toBe(200)
    expect(report.outcome).toBe('ok')
    await lateClosed
    expect(listeningDuringHook).toBe(false)

    const afterStop = http.createServer(app(drain))
    expect(() => drain.attach(afterStop.listen(0, '127.0.0.1'))).not.toThrow()
    await new Promise((resolve) => afterStop.once('close', resolve))
    expect(afterStop.listening).toBe(false)
    drain[Symbol.dispose]()
  })

  it("stops a drained http.Server's connections-checking interval, as the server's own close() does", async () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const server = http.createServer(app(drain))
    drain.attach(server)
    const port = await listen(server)
    const agent = new http.Agent({ keepAlive: true })
    await get(port, '/fast', agent)
    expect(connectionsCheckStopped(server)).toBe(false)
    expect((await drain.shutdown()).outcome).toBe('ok')
    expect(connectionsCheckStopped(server)).toBe(true)
    agent.destroy()
    drain[Symbol.dispose]()
  })

  it('keep-alive connections accepted before attach(): an idle one is closed after the idle linger, one that sends a request is answered', async () => {
    const drain = new Drain({ ...QUIET, gracePeriod: 2_000, registry: new Registry() })
    const server = http.createServer(app(drain))
    server.keepAliveTimeout = 65_000
    const port = await listen(server)
    const idleAgent = new http.Agent({ keepAlive: true })
    const busyAgent = new http.Agent({ keepAlive: true })
    await Promise.all([get(port, '/fast', idleAgent), get(port, '/fast', busyAgent)])
    drain.attach(server)
    expect(drain.openConnections).toBe(0)
    const shutdown = drain.shutdown()
    const answered = get(port, '/fast', busyAgent)
    const report = await shutdown
    expect(await answered).toMatchObject({ status: 200, connection: 'close' })
    expect(report).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    expect(server.listening).toBe(false)
    idleAgent.destroy()
    busyAgent.destroy()
    drain[Symbol.dispose]()
  })

  it('a request whose head began before the drain and ends after the idle linger is answered; a connection that sent nothing is closed', async () => {
    const registry = new Registry()
    const drain = new Drain({ ...QUIET, gracePeriod: 3_000, registry })
    const server = http.createServer(app(drain))
    const port = await listen(server)
    drain.attach(server)
    const silent = await RawConnection.open(port)
    const slow = await RawConnection.open(port)
    let shutdown: Promise<ShutdownReport> | undefined
    const response = await slow.getInTwoParts('/fast', async () => {
      await new Promise((resolve) => setTimeout(resolve, 50))
      shutdown = drain.shutdown()
      // Longer than the idle linger (250 ms): no byte of the head arrives meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 400))
    })
    expect(response).toMatchObject({ status: 200, headers: { connection: 'close' } })
    expect(await shutdown).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    await silent.closed()
    const closed = await registry.getSingleMetric('ballast_drain_closed_connections_total')?.get()
    expect(Object.fromEntries(closed?.values.map(({ labels, value }) => [labels.reason, value]) ?? [])).toEqual({
      idle: 1,
      after_response: 1,
      forced: 0,
    })
    drain[Symbol.dispose]()
  })

  /** A drain on a plain http server, and an upload of `length` bytes answered 401 after the first 1,000. */
  async function answeredEarly(length = 3_000) {
    const registry = new Registry()
    const drain = new Drain({ ...QUIET, gracePeriod: 3_000, registry })
    const server = http.createServer(app(drain))
    const port = await listen(server)
    drain.attach(server)
    const upload = rawConnection(port)
    upload.socket.write(`POST /reject HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${length}\r\n\r\n${'a'.repeat(1_000)}`)
    await vi.waitFor(() => expect(upload.text()).toContain('401'), { timeout: 5_000 })
    return { registry, drain, upload }
  }

  it('the rest of a body answered early, arriving during the drain, is not taken for a request: the connection is closed as idle', async () => {
    const { registry, drain, upload } = await answeredEarly()
    const shutdown = drain.shutdown()
    for (const part of ['b', 'c']) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      upload.socket.write(part.repeat(1_000))
    }
    expect(await shutdown).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    await upload.closed
    const closed = await registry.getSingleMetric('ballast_drain_closed_connections_total')?.get()
    expect(closed?.values.find(({ labels }) => labels.reason === 'idle')?.value).toBe(1)
    drain[Symbol.dispose]()
  })

  /** Writes `chunk` every `every` ms until the connection closes, `times` times at most; resolves with the writes made. */
  async function trickle(connection: ReturnType<typeof rawConnection>, chunk: string, every: number, times: number): Promise<number> {
    let open = true
    void connection.closed.then(() => (open = false))
    let writes = 0
    while (open && writes < times) {
      connection.socket.write(chunk)
      writes++
      await new Promise((resolve) => setTimeout(resolve, every))
    }
    return writes
  }

  it('blank lines trickled on an idle connection hold the drain a few lingers, not until gracePeriod', async () => {
    const registry = new Registry()
    const drain = new Drain({ ...QUIET, gracePeriod: 3_000, registry })
    const server = http.createServer(app(drain))
    const port = await listen(server)
    drain.attach(server)
    const blank = rawConnection(port)
    blank.socket.write('GET /fast HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    await vi.waitFor(() => expect(blank.text()).toContain('HTTP/1.1 200'), { timeout: 5_000 })
    const shutdown = drain.shutdown()
    const writes = await trickle(blank, '\r\n', 100, 40)
    // Before: still open at gracePeriod (3 s), outcome grace_period_exceeded.
    expect(await shutdown).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    expect(writes).toBeLessThanOrEqual(15) // three more lingers of 250 ms: ~10
    const closed = await registry.getSingleMetric('ballast_drain_closed_connections_total')?.get()
    expect(closed?.values.find(({ labels }) => labels.reason === 'idle')?.value).toBe(1)
    drain[Symbol.dispose]()
  })

  it('an upload answered early that keeps arriving through the drain is not cut under its client: closed as idle once it ends', async () => {
    const { drain, upload } = await answeredEarly(31_000)
    const shutdown = drain.shutdown()
    // 30 more kB over ~1.5 s: six lingers' worth, all of it sent.
    expect(await trickle(upload, 'b'.repeat(1_000), 50, 30)).toBe(30)
    expect(await shutdown).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    await upload.closed
    drain[Symbol.dispose]()
  })

  it('the body of a request answered early that stops arriving holds nothing: closed as idle after the linger', async () => {
    const { drain, upload } = await answeredEarly()
    expect(await drain.shutdown()).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    await upload.closed
    drain[Symbol.dispose]()
  })

  it('a request pipelined in the segment of the one before, its head cut at the drain, is answered', async () => {
    const drain = new Drain({ ...QUIET, gracePeriod: 3_000, registry: new Registry() })
    const server = http.createServer(app(drain))
    const port = await listen(server)
    drain.attach(server)
    const pipelined = rawConnection(port)
    pipelined.socket.write('GET /fast HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /fast HTTP/1.1\r\n')
    await vi.waitFor(() => expect(pipelined.text()).toContain('HTTP/1.1 200'), { timeout: 5_000 })
    const shutdown = drain.shutdown()
    // Longer than the idle linger (250 ms).
    await new Promise((resolve) => setTimeout(resolve, 400))
    pipelined.socket.write('Host: 127.0.0.1\r\n\r\n')
    expect(await shutdown).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    await pipelined.closed
    expect(pipelined.text().split('HTTP/1.1 200')).toHaveLength(3)
    drain[Symbol.dispose]()
  })

  it('https: a ClientHello cut short, then silence, is closed after the idle linger, not left until gracePeriod', async () => {
    const { drain, port } = await httpsDrain({ gracePeriod: 2_000 })
    const stalled = rawConnection(port)
    // A TLS record header announcing a 512-byte handshake record, and a few bytes of it.
    stalled.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]))
    await vi.waitFor(() => expect(drain.openConnections).toBe(1), { timeout: 5_000 })
    await new Promise((resolve) => setTimeout(resolve, 50))
    const report = await drain.shutdown()
    await stalled.closed
    expect(report).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    drain[Symbol.dispose]()
  })

  it('https: a TCP connection that never starts its TLS handshake is closed after the idle linger, not left until gracePeriod', async () => {
    const { registry, drain, port, clientErrors } = await httpsDrain({ gracePeriod: 2_000 })
    // Connected, no ClientHello (a stalled client, a TCP health check, a pre-connect).
    const stalled = rawConnection(port)
    await vi.waitFor(() => expect(drain.openConnections).toBe(1), { timeout: 5_000 })
    const report = await drain.shutdown()
    await stalled.closed
    expect(report).toMatchObject({ outcome: 'ok', forcedConnections: 0 })
    expect(drain.openConnections).toBe(0)
    const closed = await registry.getSingleMetric('ballast_drain_closed_connections_total')?.get()
    expect(closed?.values.find(({ labels }) => labels.reason === 'idle')?.value).toBe(1)
    expect(new Set(clientErrors)).toEqual(new Set(['ECONNRESET']))
    drain[Symbol.dispose]()
  })

  it('drains a server listening on a pipe (not probed: the listener closes on timing alone)', async () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const server = http.createServer(app(drain))
    drain.attach(server)
    const socketPath = join(dir, 'drain.sock')
    await new Promise<void>((resolve) => server.listen(socketPath, resolve))
    const agent = new http.Agent({ keepAlive: true })
    const request = (path: string) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        http
          .get({ socketPath, path, agent }, (res) => {
            res.resume()
            res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }))
          })
          .on('error', reject)
      })
    expect(await request('/fast')).toEqual({ status: 200, connection: 'keep-alive' })
    const slow = request('/slow')
    await new Promise((resolve) => setTimeout(resolve, 20))
    const report = await drain.shutdown()
    expect(await slow).toEqual({ status: 200, connection: 'close' })
    expect(report.outcome).toBe('ok')
    expect(server.listening).toBe(false)
    agent.destroy()
    drain[Symbol.dispose]()
  })

  it('keeps the last attached server answering through the hooks; the middleware rejects requests once HTTP is drained', async () => {
    const registry = new Registry()
    const drain = new Drain({ ...QUIET, registry })
    const application = app(drain)
    const main = http.createServer(application)
    const last = http.createServer(application)
    drain.attach(main).attach(last)
    const [, lastPort] = await Promise.all([listen(main), listen(last)])
    let duringHook: { status: number } | undefined
    drain.onShutdown('probe', async () => {
      expect(main.listening).toBe(false)
      duringHook = await get(lastPort, '/fast')
    })
    const report = await drain.shutdown()
    expect(report.outcome).toBe('ok')
    expect(duringHook?.status).toBe(503)
    expect(last.listening).toBe(false)
    const rejected = await registry.getSingleMetric('ballast_drain_rejected_requests_total')?.get()
    expect(rejected?.values[0]?.value).toBe(1)
    drain[Symbol.dispose]()
  })

  it('a request after HTTP was drained gets 503 with a JSON BALLAST_DRAINING body, Connection: close and Retry-After', async () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const application = app(drain)
    const main = http.createServer(application)
    const last = http.createServer(application)
    drain.attach(main).attach(last)
    const [, lastPort] = await Promise.all([listen(main), listen(last)])
    let rejected: Awaited<ReturnType<typeof get>> | undefined
    drain.onShutdown('probe', async () => {
      rejected = await get(lastPort, '/fast')
    })
    expect((await drain.shutdown('deploy')).outcome).toBe('ok')
    expect(rejected).toMatchObject({ status: 503, connection: 'close' })
    expect(rejected?.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(rejected?.headers['content-length']).toBe(String(Buffer.byteLength(rejected?.body ?? '')))
    expect(rejected?.headers['retry-after']).toBe('1')
    expect(JSON.parse(rejected?.body ?? 'null')).toEqual({
      error: { code: 'BALLAST_DRAINING', message: 'Service is shutting down (deploy)' },
    })
    drain[Symbol.dispose]()
  })

  it('while front listeners close, a held request is served, and one whose client left is not', async () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const application = express()
    application.use(drain.middleware())
    const served: string[] = []
    application.get('/:name', (req, res) => {
      served.push(req.params.name as string)
      res.json({ ok: true })
    })
    const main = http.createServer(application)
    const last = http.createServer(application)
    drain.attach(main).attach(last)
    const [mainPort] = await Promise.all([listen(main), listen(last)])
    // Two keep-alive connections accepted just now: the front listener waits for a
    // quiet spell before it closes, and requests meanwhile are held, not answered.
    const keptAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const leftAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    await Promise.all([get(mainPort, '/warm', keptAgent), get(mainPort, '/warm', leftAgent)])
    const shutdown = drain.shutdown()
    const kept = get(mainPort, '/kept', keptAgent)
    const left = http.get({ host: '127.0.0.1', port: mainPort, path: '/left', agent: leftAgent })
    left.on('error', () => {})
    // Its client leaves once the request is in the server (and held by the middleware).
    main.on('request', (req: http.IncomingMessage) => {
      if (req.url === '/left') setImmediate(() => left.destroy())
    })
    const report = await shutdown
    expect(report.outcome).toBe('ok')
    expect((await kept).status).toBe(200)
    expect(served).toEqual(['warm', 'warm', 'kept'])
    keptAgent.destroy()
    leftAgent.destroy()
    drain[Symbol.dispose]()
  })

  it('held requests released past gracePeriod are cut, also those of a server not attached, none left unanswered', async () => {
    const drain = new Drain({ ...QUIET, gracePeriod: 300, registry: new Registry() })
    const application = express()
    application.use(drain.middleware())
    application.get('/:name', (req, res) => {
      // The first released computes past gracePeriod in the releasing callback.
      if (req.params.name === 'busy') {
        const until = performance.now() + 400
        while (performance.now() < until) {}
      }
      res.json({ ok: true })
    })
    const main = http.createServer(application)
    const last = http.createServer(application)
    const side = http.createServer(application) // uses the middleware, never attached
    drain.attach(main).attach(last)
    const [mainPort, , sidePort] = await Promise.all([listen(main), listen(last), listen(side)])
    const agents = [1, 2, 3].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }))
    const [first, second, third] = agents as [http.Agent, http.Agent, http.Agent]
    // Accepted just now: the front listener waits for a quiet spell, and requests meanwhile are held.
    await Promise.all([get(mainPort, '/warm', first), get(sidePort, '/warm', second), get(sidePort, '/warm', third)])
    const shutdown = drain.shutdown()
    const busy = get(sidePort, '/busy', second)
    const other = get(sidePort, '/other', third).then(
      (response) => response.status,
      (error: NodeJS.ErrnoException) => error.code,
    )
    const settled = await Promise.race([other, new Promise((resolve) => setTimeout(() => resolve('no answer'), 2_000))])
    // Before: 'no answer' (the release loop stopped at gracePeriod and dropped the rest).
    expect(settled).toBe('ECONNRESET')
    await busy.catch(() => undefined)
    expect((await shutdown).outcome).toBe('grace_period_exceeded')
    for (const agent of agents) agent.destroy()
    await new Promise((resolve) => side.close(resolve))
    drain[Symbol.dispose]()
  })

  it('a held request whose chain throws (plain http, no Express to catch it) does not keep the others from running', async () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const middleware = drain.middleware()
    const boom = new Error('handler bug')
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) =>
      middleware(req, res, () => {
        if (req.url === '/throw') throw boom
        res.end('ok')
      })
    const main = http.createServer(handler)
    const last = http.createServer(handler)
    drain.attach(main).attach(last)
    const [mainPort] = await Promise.all([listen(main), listen(last)])
    const agents = [1, 2].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }))
    const [first, second] = agents as [http.Agent, http.Agent]
    // Accepted just now: the front listener waits for a quiet spell, and requests meanwhile are held.
    await Promise.all([get(mainPort, '/warm', first), get(mainPort, '/warm', second)])
    const uncaught: unknown[] = []
    process.setUncaughtExceptionCaptureCallback((error) => uncaught.push(error))
    try {
      const shutdown = drain.shutdown()
      const throwing = http.get({ host: '127.0.0.1', port: mainPort, path: '/throw', agent: first })
      throwing.on('error', () => {})
      const served = get(mainPort, '/ok', second)
      // Before: the throw ended the release loop, and /ok, held behind it, was never run.
      expect((await served).body).toBe('ok')
      await vi.waitFor(() => expect(uncaught).toEqual([boom]), { timeout: 2_000 })
      throwing.destroy()
      expect((await shutdown).outcome).toBe('ok')
    } finally {
      process.setUncaughtExceptionCaptureCallback(null)
      for (const agent of agents) agent.destroy()
      drain[Symbol.dispose]()
    }
  })

  it("a request held while front listeners close runs in its own async context (the app's AsyncLocalStorage, tracing)", async () => {
    const drain = new Drain({ ...QUIET, registry: new Registry() })
    const storage = new AsyncLocalStorage<string>()
    const application = express()
    application.use((req, _res, next) => storage.run(req.url, next))
    application.use(drain.middleware())
    const served: string[] = []
    application.get('/:name', (req, res) => {
      served.push(`${req.params.name} in ${storage.getStore()}`)
      res.json({ ok: true })
    })
    const main = http.createServer(application)
    const last = http.createServer(application)
    drain.attach(main).attach(last)
    const [mainPort] = await Promise.all([listen(main), listen(last)])
    const agents = [1, 2, 3].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }))
    await Promise.all(agents.map((agent) => get(mainPort, '/warm', agent)))
    const shutdown = drain.shutdown()
    // Held together, released together from one callback: each must still see its own store.
    const held = await Promise.all(agents.map((agent, i) => get(mainPort, `/held${i}`, agent)))
    expect(held.map((response) => response.status)).toEqual([200, 200, 200])
    expect((await shutdown).outcome).toBe('ok')
    expect(served.slice(3).sort()).toEqual(['held0 in /held0', 'held1 in /held1', 'held2 in /held2'])
    for (const agent of agents) agent.destroy()
    drain[Symbol.dispose]()
  })

  it('requests pipelined on one connection during the drain are all answered: only the last response says Connection: close', async () => {
    const drain = new Drain({ ...QUIET, readinessDelay: 300, registry: new Registry() })
    const application = express()
    application.use(drain.middleware())
    const handled: string[] = []
    application.all('/work/:name', (req, res) => {
      handled.push(req.params.name as string)
      setTimeout(() => res.json({ name: req.params.name }), Number(req.query.ms ?? 0))
    })
    const server = http.createServer(application)
    drain.attach(server)
    const port = await listen(server)
    const connection = rawConnection(port)
    connection.socket.write('GET /work/warm HTTP/1.1\r\nHost: x\r\n\r\n')
    await vi.waitFor(() => expect(connection.text()).toContain('"warm"'), { timeout: 5_000 })
    const shutdown = drain.shutdown('test')
    // The first is the slowest: the two behind it are answered before it, and queued.
    const post = (name: string, ms: number) => `POST /work/${name}?ms=${ms} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`
    connection.socket.write(post('one', 30) + post('two', 0) + post('three', 0))
    await connection.closed
    const responses = connection
      .text()
      .split(/(?=HTTP\/1\.1 )/)
      .slice(1)
    expect(handled).toEqual(['warm', 'one', 'two', 'three'])
    expect(responses.map((response) => /"name":"(\w+)"/.exec(response)?.[1])).toEqual(['one', 'two', 'three'])
    expect(responses.map((response) => /^connection: close\r?$/im.test(response))).toEqual([false, false, true])
    expect((await shutdown).outcome).toBe('ok')
    drain[Symbol.dispose]()
  })

  it('a request pipelined behind a response that already went out with Connection: close is not run (it cannot be answered)', async () => {
    const drain = new Drain({ ...QUIET, readinessDelay: 300, registry: new Registry() })
    const application = express()
    application.use(drain.middleware())
    const handled: string[] = []
    application.get('/stream', (_req, res) => {
      handled.push('stream')
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('a')
      setTimeout(() => res.end('b'), 100)
    })
    application.post('/order', (_req, res) => {
      handled.push('order')
      res.json({ ok: true })
    })
    const server = http.createServer(application)
    drain.attach(server)
    const port = await listen(server)
    const connection = rawConnection(port)
    connection.socket.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
    await vi.waitFor(() => expect(connection.text()).toContain('\r\n\r\n'), { timeout: 5_000 })
    const shutdown = drain.shutdown('test')
    connection.socket.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
    // The second stream's headers are out, saying the connection ends after it.
    await vi.waitFor(() => expect(connection.text().split('HTTP/1.1 ').length).toBe(3), { timeout: 5_000 })
    connection.socket.write('POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n')
    await connection.closed
    expect(connection.text().split('HTTP/1.1 ').length).toBe(3)
    expect(handled).toEqual(['stream', 'stream'])
    const report = await shutdown
    expect(report.outcome).toBe('ok')
    expect(drain.inflight).toBe(0)
    drain[Symbol.dispose]()
  })

  it('elapsedMs and ballast_drain_age_seconds: 0 while serving, growing while draining, the drain duration once stopped', async () => {
    const registry = new Registry()
    const age = async () =>
      (await registry.getMetricsAsJSON()).find((metric) => metric.name === 'ballast_drain_age_seconds')?.values[0]?.value
    const drain = new Drain({ ...QUIET, registry })
    let release: () => void = () => {}
    drain.onShutdown('held', () => new Promise<void>((resolve) => (release = resolve)))
    expect(drain.elapsedMs).toBe(0)
    expect(await age()).toBe(0)

    const before = performance.now()
    const shutdown = drain.shutdown('test')
    const after = performance.now()
    await vi.waitFor(() => expect(drain.state).toBe('closing'), { timeout: 5_000 })
    await new Promise((resolve) => setTimeout(resolve, 30))
    // Read between two clock readings of this test: bounded on both sides by them.
    const readFrom = performance.now()
    const draining = drain.elapsedMs
    const scraped = (await age()) ?? Number.NaN
    const readTo = performance.now()
    expect(draining).toBeGreaterThanOrEqual(readFrom - after)
    expect(draining).toBeLessThanOrEqual(readTo - before)
    expect(scraped * 1000).toBeGreaterThanOrEqual(draining)
    expect(scraped * 1000).toBeLessThanOrEqual(readTo - before)

    release()
    const report = await shutdown
    await new Promise((resolve) => setTimeout(resolve, 30))
    // Stopped: the age no longer grows, and it is the report's duration.
    expect(drain.elapsedMs).toBe(report.durationMs)
    expect(await age()).toBe(report.durationMs / 1000)
    drain[Symbol.dispose]()
  })

  it('two drains on one registry share the series instead of throwing', () => {
    const registry = new Registry()
    const one = new Drain({ ...QUIET, registry })
    const two = new Drain({ ...QUIET, registry })
    expect(registry.getSingleMetric('ballast_drain_state')).toBeDefined()
    one[Symbol.dispose]()
    two[Symbol.dispose]()
  })
})

it('active handles return to baseline after a drain under keep-alive load', async () => {
  await new Promise((resolve) => setTimeout(resolve, 50))
  const baseline = process.getActiveResourcesInfo().sort()
  const drain = new Drain({ ...QUIET, registry: new Registry() })
  const server = http.createServer(app(drain))
  drain.attach(server)
  const port = await listen(server)
  const agent = new http.Agent({ keepAlive: true })
  let signalled = false
  let ok = 0
  const failures: string[] = []
  const loops = Array.from({ length: 8 }, async (_, loop) => {
    for (let index = 0; index < 2_000; index++) {
      try {
        const response = await get(port, loop % 2 === 0 ? '/fast' : '/slow', agent)
        if (response.status === 200) ok++
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? String(error)
        if (code === 'ECONNREFUSED' && signalled) return
        failures.push(code)
      }
    }
  })
  await new Promise((resolve) => setTimeout(resolve, 150))
  signalled = true
  const report = await drain.shutdown()
  await Promise.all(loops)
  agent.destroy()
  drain[Symbol.dispose]()
  expect(report.outcome).toBe('ok')
  expect(failures).toEqual([])
  expect(ok).toBeGreaterThan(10)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const after = process.getActiveResourcesInfo().sort()
  console.info('[drain handles] baseline', baseline, 'after', after)
  // Nothing the drain, the server or the sockets created is left: every resource type
  // is at most as numerous as before (the runner's own timers come and go).
  const count = (list: string[]) => {
    const counts: Record<string, number> = {}
    for (const type of list) counts[type] = (counts[type] ?? 0) + 1
    return counts
  }
  const [before, now] = [count(baseline), count(after)]
  for (const [type, n] of Object.entries(now)) expect(n, type).toBeLessThanOrEqual(before[type] ?? 0)
  expect(now.TCPSocketWrap ?? 0).toBe(0)
  expect(now.TCPServerWrap ?? 0).toBe(0)
})

it('hooks that never settle, cut short by gracePeriod: their timeout timers are cleared, active handles return to baseline', async () => {
  await new Promise((resolve) => setTimeout(resolve, 50))
  const baseline = process.getActiveResourcesInfo()
  // Several drains, so that a leak (one 60 s timer each) outnumbers the runner's own timers coming and going.
  const drains = Array.from({ length: 4 }, () => new Drain({ ...QUIET, gracePeriod: 100, hookTimeout: 60_000, registry: new Registry() }))
  const signals: AbortSignal[] = []
  for (const drain of drains) {
    drain.onShutdown('never', (signal) => {
      signals.push(signal)
      return new Promise(() => {})
    })
  }
  const reports = await Promise.all(drains.map((drain) => drain.shutdown()))
  for (const drain of drains) drain[Symbol.dispose]()
  for (const report of reports) {
    expect(report).toMatchObject({ outcome: 'grace_period_exceeded', hooks: [{ name: 'never', outcome: 'abandoned' }] })
  }
  expect(signals.map((signal) => signal.reason instanceof GracePeriodExceededError)).toEqual([true, true, true, true])
  await new Promise((resolve) => setTimeout(resolve, 50))
  // Before, every hook's timeout timer outlived the drain (and kept the process up for 60 s).
  expect(leakedResources(baseline)).toEqual({})
})

describe('fake timers', () => {
  it('setTimeout faked, performance not: the listener waits for quiet by the waits it scheduled, with a probe or two, not hundreds', async () => {
    const { drain, server, port } = await servedDrain({ readinessDelay: 1_000 })
    // As node:test's mock.timers, or vitest told to leave performance alone.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    try {
      let report: ShutdownReport | undefined
      void drain.shutdown().then((done) => {
        report = done
      })
      await vi.advanceTimersByTimeAsync(990)
      // Accepted a real millisecond or so before closing starts: the listener must now
      // stay quiet for 50 ms, which on the real clock takes many probes to see.
      expect((await get(port, '/fast')).status).toBe(200)
      let probes = 0
      server.on('connection', () => probes++)
      for (let advanced = 0; report === undefined && advanced < 5_000; advanced += 10) await vi.advanceTimersByTimeAsync(10)
      // A probe or two here (the real clock decides whether the quiet had begun before
      // closing did); hundreds before the waits were counted.
      expect({ outcome: report?.outcome, probes }).toEqual({ outcome: 'ok', probes: expect.any(Number) })
      expect(probes).toBeLessThan(10)
    } finally {
      vi.useRealTimers()
      drain[Symbol.dispose]()
    }
  })
})
