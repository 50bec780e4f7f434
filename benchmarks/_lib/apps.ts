// The Express 5 apps the HTTP benchmarks compare. Every app answers GET /hello
// with the same small JSON body, so what differs is only the middleware in front.
// Each app gets its own prom-client Registry (the global one is never touched).
import type { Server } from 'node:http'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { Breaker } from '@ballast/breaker'
import { metricsHandler } from '@ballast/core'
import { deadline } from '@ballast/deadline'
import { Drain } from '@ballast/drain'
import express from 'express'
import { Registry } from 'prom-client'
import { busyWait } from './busy.ts'

const require = createRequire(import.meta.url)

export const APP_KINDS = [
  'bare',
  'bare-async',
  'busy',
  'drain',
  'deadline',
  'metrics',
  'full',
  'express-prom-bundle',
  'connect-timeout',
  'terminus',
  'scale',
] as const
export type AppKind = (typeof APP_KINDS)[number]

export interface AppOptions {
  /** `scale` only: number of routes `/r<i>/:id`, each behind `deadline()` and a breaker. */
  readonly routes?: number
  /** `scale` only: number of breakers the routes share (route i uses breaker i % breakers). */
  readonly breakers?: number
}

export interface BuiltApp {
  readonly server: Server
  readonly registry: Registry
  /** Paths a load generator cycles through. */
  readonly paths: readonly string[]
  /** Releases timers and metric collectors (the server is closed by the caller). */
  dispose(): void
}

const BODY = { message: 'hello' }

/** What the `busy` calibration app's middleware spends per request, in µs. */
export const BUSY_MICROS = 4

// The in-process dependency of the full stack: an async call that resolves at once,
// so the benchmark measures the breaker and the deadline plumbing, not the dependency.
const inventory = ({ signal }: { signal: AbortSignal }): Promise<number> => Promise.resolve(signal.aborted ? -1 : 42)

/** Builds the app `kind` on an http.Server that is not yet listening. */
export function buildApp(kind: AppKind, options: AppOptions = {}): BuiltApp {
  const app = express()
  const registry = new Registry()
  const server = createServer(app)
  server.keepAliveTimeout = 60_000
  const disposers: (() => void)[] = []
  let paths: string[] = ['/hello']

  const withDrain = () => {
    const drain = new Drain({ signals: false, exit: false, logger: false, registry })
    drain.attach(server)
    app.use(drain.middleware())
    disposers.push(() => drain[Symbol.dispose]())
    return drain
  }

  switch (kind) {
    case 'bare':
      break
    case 'bare-async':
      // Bare Express with the full stack's handler shape: the in-process dependency
      // awaited, no breaker, so the full stack can be told apart from an async handler.
      app.get('/hello', async (_req, res) => {
        const stock = await inventory({ signal: new AbortController().signal })
        res.json({ ...BODY, stock })
      })
      break
    case 'busy':
      // Calibration: bare Express plus a middleware of known cost and nothing else.
      app.use((_req, _res, next) => {
        busyWait(BUSY_MICROS)
        next()
      })
      break
    case 'drain':
      withDrain()
      break
    case 'deadline':
      withDrain()
      app.use(deadline({ timeout: 2_000, registry }))
      break
    case 'metrics':
      withDrain()
      app.get('/metrics', metricsHandler(registry))
      app.use(deadline({ timeout: 2_000, registry }))
      break
    case 'full':
    case 'scale': {
      // Design section 5: drain first, probes and /metrics before the app-wide
      // deadline, a shorter route deadline, and the dependency behind a breaker
      // with a fallback (Hystrix-style settings).
      const drain = withDrain()
      app.get('/readyz', drain.readiness())
      app.get('/livez', drain.liveness())
      app.get('/metrics', metricsHandler(registry))
      app.use(deadline({ timeout: 2_000, registry }))
      const breakerCount = kind === 'full' ? 1 : (options.breakers ?? 1)
      const routeCount = kind === 'full' ? 1 : (options.routes ?? 1)
      const breakers = Array.from(
        { length: breakerCount },
        (_, i) =>
          new Breaker<number>({
            name: breakerCount === 1 ? 'inventory' : `inventory-${i}`,
            timeout: 800,
            volumeThreshold: 20,
            errorThresholdPercentage: 50,
            resetTimeout: 5_000,
            retry: { attempts: 1 },
            fallback: () => 0,
            registry,
          }),
      )
      for (const breaker of breakers) disposers.push(() => breaker[Symbol.dispose]())
      if (kind === 'full') {
        const breaker = breakers[0] as Breaker<number>
        app.get('/hello', deadline({ timeout: 500, registry }), async (_req, res) => {
          const stock = await breaker.execute(inventory)
          res.json({ ...BODY, stock })
        })
      } else {
        paths = []
        for (let i = 0; i < routeCount; i++) {
          const breaker = breakers[i % breakerCount] as Breaker<number>
          app.get(`/r${i}/:id`, deadline({ timeout: 500, registry }), async (req, res) => {
            const stock = await breaker.execute(inventory)
            res.json({ ...BODY, id: req.params.id, stock })
          })
          paths.push(`/r${i}/42`)
        }
      }
      break
    }
    case 'express-prom-bundle': {
      const promBundle = require('express-prom-bundle') as (options: object) => express.RequestHandler
      app.use(promBundle({ includeMethod: true, includePath: true, promRegistry: registry, autoregister: true }))
      break
    }
    case 'connect-timeout': {
      const timeout = require('connect-timeout') as (time: string) => express.RequestHandler
      app.use(timeout('2s'))
      break
    }
    case 'terminus': {
      const { createTerminus } = require('@godaddy/terminus') as { createTerminus(server: Server, options: object): Server }
      createTerminus(server, { signals: [], healthChecks: { '/healthz': () => Promise.resolve() }, logger: () => undefined })
      break
    }
  }
  if (kind !== 'scale' && kind !== 'full' && kind !== 'bare-async') {
    app.get('/hello', (_req, res) => {
      res.json(BODY)
    })
  }
  return {
    server,
    registry,
    paths,
    dispose() {
      for (const dispose of disposers) dispose()
    },
  }
}
