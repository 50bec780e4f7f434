import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url))

/** Configuration of the fixture service (see fixtures/server.mjs). */
export interface FixtureConfig {
  gracePeriod?: number
  readinessDelay?: number
  idleLinger?: number
  keepAliveTimeout?: number
  express?: 4 | 5
  metrics?: boolean
  postgres?: string
  hook?: 'hang' | 'slow'
  /** Print a `connection-closed` line (client port, hadError) when a socket of the app server closes. */
  logConnections?: boolean
}

/** One JSON line the fixture printed, with its wall-clock time `t`. */
export interface FixtureEvent {
  t: number
  event: string
  [key: string]: unknown
}

/** A running fixture service in a child process. */
export interface ChildServer {
  readonly port: number
  readonly metricsPort: number | undefined
  readonly child: ChildProcess
  readonly events: FixtureEvent[]
  readonly stderr: () => string
  /** Sends a signal; returns the `performance.now()` at which it was sent. */
  kill(signal?: NodeJS.Signals): number
  /** Resolves with the exit code and `performance.now()` of the exit. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>
}

/** Starts the fixture with the built @ballast/drain and waits until it listens. */
export function startChildServer(config: FixtureConfig, timeoutMs = 10_000): Promise<ChildServer> {
  return startFixture('server.mjs', { DRAIN_FIXTURE: JSON.stringify(config) }, timeoutMs)
}

/** The services of fixtures/scenarios.mjs, each showing one edge of the drain. */
export type Scenario = 'attach-after-start-up' | 'exit-false' | 'upgrade-and-continue'

/**
 * Starts one service of fixtures/scenarios.mjs and waits for its `ready` line
 * (`port` 0 for `attach-after-start-up`, which is not listening yet).
 */
export function startScenario(
  scenario: Scenario,
  drainOptions: { gracePeriod?: number; readinessDelay?: number } = {},
): Promise<ChildServer> {
  return startFixture('scenarios.mjs', { DRAIN_SCENARIO: scenario, DRAIN_OPTIONS: JSON.stringify(drainOptions) }, 10_000)
}

async function startFixture(name: string, env: Record<string, string>, timeoutMs: number): Promise<ChildServer> {
  const child = spawn(process.execPath, [fixture(name)], {
    env: { ...process.env, ...env, KUBERNETES_SERVICE_HOST: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const events: FixtureEvent[] = []
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() }))
  })
  const ready = new Promise<FixtureEvent>((resolve, reject) => {
    let buffer = ''
    const timer = setTimeout(() => reject(new Error(`fixture did not start within ${timeoutMs} ms: ${stderr}`)), timeoutMs)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk
      let newline = buffer.indexOf('\n')
      while (newline >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + 1)
        newline = buffer.indexOf('\n')
        const event = JSON.parse(line) as FixtureEvent
        events.push(event)
        if (event.event === 'ready') {
          clearTimeout(timer)
          resolve(event)
        }
      }
    })
    void exited.then(({ code }) => {
      clearTimeout(timer)
      reject(new Error(`fixture exited with ${code} before listening: ${stderr}`))
    })
  })
  const started = await ready
  return {
    port: started.port as number,
    metricsPort: started.metricsPort as number | undefined,
    child,
    events,
    stderr: () => stderr,
    kill(signal = 'SIGTERM') {
      const at = performance.now()
      child.kill(signal)
      return at
    },
    exited,
  }
}
