import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** A service the demo started as a child process. */
export interface ServiceProcess {
  readonly name: string
  readonly child: ChildProcess
  /** Resolves with the exit code (or 128 + signal number style text) once the process exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const started = new Set<ChildProcess>()

/**
 * Kills (SIGKILL) every child still running: the demo's last resort on a crash
 * or Ctrl-C, so that no service outlives it. Only processes this demo started.
 */
export function killAll(): void {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill('SIGKILL')
  }
}

/** A free TCP port on 127.0.0.1 (closed again at once; the service binds it right after). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** Starts `node script` with `env`, its stdout and stderr appended to `logFile`. */
export function startService(name: string, script: string, env: Record<string, string>, logFile: string): ServiceProcess {
  const log = createWriteStream(logFile, { flags: 'a' })
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  started.add(child)
  child.stdout?.pipe(log, { end: false })
  child.stderr?.pipe(log, { end: false })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      started.delete(child)
      log.end()
      resolve({ code, signal })
    })
  })
  return { name, child, exited }
}

/** Polls `url` until it answers 200, the process exits, or `timeoutMs` passes. */
export async function waitReady(service: ServiceProcess, url: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  let exited = false
  void service.exited.then(() => {
    exited = true
  })
  while (performance.now() < deadline) {
    if (exited) throw new Error(`${service.name} exited during start-up (see its log)`)
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(500) })
      await response.arrayBuffer()
      if (response.status === 200) return
    } catch {
      // Not listening yet.
    }
    await sleep(50)
  }
  throw new Error(`${service.name} was not ready at ${url} within ${timeoutMs} ms`)
}

/** Sends SIGTERM and waits for the exit, SIGKILL after `timeoutMs`. */
export async function stopService(
  service: ServiceProcess,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGTERM')
  const timer = setTimeout(() => service.child.kill('SIGKILL'), timeoutMs)
  try {
    return await service.exited
  } finally {
    clearTimeout(timer)
  }
}
