import { describe, expect, it } from 'vitest'
import { DUPLICATE_SIGNAL_WINDOW_MS } from '../src/drain.js'
import { ExitCode } from '../src/exit-codes.js'
import { type ChildServer, startChildServer } from './support/child-server.js'
import { RawConnection } from './support/raw-http.js'

// Intervals are measured on the child's own clock, from the moment it handled the
// signal (its `signal` line) to its `exit` line (written in process.on('exit')): how
// long the OS takes to deliver the signal, to start or reap a process, or to run the
// test process, is not the drain's time. Bounds are the figures plus SLACK for
// the child's timers and event loop on a busy 2-core machine. Wrong behaviour (waiting
// for keepAliveTimeout, for gracePeriod, for a hung hook, or stalling after the
// requests finished) is far past every bound. Measured numbers are printed.
const SLACK = 150

/** The child's wall-clock time (its `t`) of the `index`-th event that matches. */
function childTime(server: ChildServer, match: (event: ChildServer['events'][number]) => boolean, index = 0): number {
  const event = server.events.filter(match)[index]
  if (event === undefined) throw new Error(`the child printed no such event (#${index}): ${JSON.stringify(server.events)}`)
  return event.t
}

const signalled = (server: ChildServer, index = 0) => childTime(server, (event) => event.event === 'signal', index)
const exited = (server: ChildServer) => childTime(server, (event) => event.event === 'exit')

async function waitForEvent(server: ChildServer, match: (event: ChildServer['events'][number]) => boolean): Promise<void> {
  for (let waited = 0; !server.events.some(match); waited += 5) {
    if (waited > 5_000) throw new Error(`the child printed no such event within 5 s: ${JSON.stringify(server.events)}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

describe('time from signal to exit', () => {
  it('readinessDelay 0 and keepAliveTimeout 65 s: exits within the longest in-flight request + 250 ms', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000, keepAliveTimeout: 65_000 })
    const idle = await Promise.all(Array.from({ length: 8 }, () => RawConnection.open(server.port)))
    for (const connection of idle) await connection.get('/fast')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const busy = await RawConnection.open(server.port)
    const slow = busy.get('/slow?ms=300&log=1')
    // The request is in flight: the child started it.
    await waitForEvent(server, (event) => event.event === 'request')
    const signalAt = server.kill('SIGTERM')
    const response = await slow
    const exit = await server.exited
    const signal = signalled(server)
    const started = childTime(server, (event) => event.event === 'request')
    const finished = childTime(server, (event) => event.event === 'response')
    // The longest in-flight request: from the signal until the child sent its response.
    const longestInflight = finished - signal
    const exitAfter = exited(server) - signal
    console.info(
      `[drain timing] in-flight ${Math.round(longestInflight)} ms left at the signal, exit after ${Math.round(exitAfter)} ms ` +
        `(${Math.round(exitAfter - longestInflight)} ms after the response; test process saw ${Math.round(exit.at - signalAt)} ms)`,
    )
    expect(response.status).toBe(200)
    expect(response.headers.connection).toBe('close')
    expect(exit.code).toBe(ExitCode.OK)
    expect(started).toBeLessThan(signal)
    expect(longestInflight).toBeGreaterThan(0)
    expect(exitAfter).toBeGreaterThanOrEqual(longestInflight)
    expect(exitAfter).toBeLessThan(longestInflight + 250 + SLACK)
    for (const connection of idle) expect(connection.ended).toBe('end')
  })

  it('idle keep-alive sockets only: exits after the idle linger, not after keepAliveTimeout', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000, keepAliveTimeout: 65_000 })
    const idle = await Promise.all(Array.from({ length: 8 }, () => RawConnection.open(server.port)))
    for (const connection of idle) await connection.get('/fast')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const signalAt = server.kill('SIGTERM')
    const exit = await server.exited
    const exitAfter = exited(server) - signalled(server)
    console.info(
      `[drain timing] idle keep-alive only: exit after ${Math.round(exitAfter)} ms (idle linger 250 ms; test process saw ${Math.round(exit.at - signalAt)} ms)`,
    )
    expect(exit.code).toBe(ExitCode.OK)
    // Nothing in flight: the 0 + 250 ms, which the idle linger (250 ms) fills.
    expect(exitAfter).toBeGreaterThanOrEqual(250 - 10)
    expect(exitAfter).toBeLessThan(250 + SLACK)
    for (const connection of idle) expect(connection.ended).toBe('end')
  })

  it('no connection at all: exits at once', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000 })
    const signalAt = server.kill('SIGINT')
    const exit = await server.exited
    const exitAfter = exited(server) - signalled(server)
    console.info(
      `[drain timing] no connection: exit after ${Math.round(exitAfter)} ms (test process saw ${Math.round(exit.at - signalAt)} ms)`,
    )
    expect(exit.code).toBe(ExitCode.OK)
    expect(exitAfter).toBeLessThan(250 + SLACK)
  })

  it('a hung hook: exits by gracePeriod + 250 ms with GRACE_PERIOD_EXCEEDED', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 1_000, hook: 'hang' })
    const signalAt = server.kill('SIGTERM')
    const exit = await server.exited
    const exitAfter = exited(server) - signalled(server)
    console.info(
      `[drain timing] hung hook, gracePeriod 1000 ms: exit ${exit.code} after ${Math.round(exitAfter)} ms (test process saw ${Math.round(exit.at - signalAt)} ms)`,
    )
    expect(exit.code).toBe(ExitCode.GRACE_PERIOD_EXCEEDED)
    expect(exitAfter).toBeGreaterThanOrEqual(1_000 - 10)
    expect(exitAfter).toBeLessThan(1_000 + 250 + SLACK)
  })

  it('a never-ending request: its socket is destroyed and the process exits by gracePeriod + 250 ms, non-zero', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 1_000 })
    const connection = await RawConnection.open(server.port)
    const hung = connection.get('/hang').then(
      () => 'answered',
      () => 'destroyed',
    )
    await new Promise((resolve) => setTimeout(resolve, 20))
    const signalAt = server.kill('SIGTERM')
    const exit = await server.exited
    const exitAfter = exited(server) - signalled(server)
    console.info(
      `[drain timing] never-ending request, gracePeriod 1000 ms: exit ${exit.code} after ${Math.round(exitAfter)} ms (test process saw ${Math.round(exit.at - signalAt)} ms)`,
    )
    expect(await hung).toBe('destroyed')
    expect(exit.code).toBe(ExitCode.GRACE_PERIOD_EXCEEDED)
    expect(exitAfter).toBeGreaterThanOrEqual(1_000 - 10)
    expect(exitAfter).toBeLessThan(1_000 + 250 + SLACK)
  })

  it('a second signal exits within 100 ms with SECOND_SIGNAL', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000 })
    const connection = await RawConnection.open(server.port)
    void connection.get('/hang').catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 20))
    server.kill('SIGTERM')
    // Wait until the first signal was handled and its duplicate window is over, so the
    // second one is a second one.
    await waitForEvent(server, (event) => event.state === 'closing')
    await new Promise((resolve) => setTimeout(resolve, DUPLICATE_SIGNAL_WINDOW_MS + 50))
    const secondAt = server.kill('SIGTERM')
    const exit = await server.exited
    const exitAfter = exited(server) - signalled(server, 1)
    console.info(
      `[drain timing] second signal: exit ${exit.code} after ${Math.round(exitAfter)} ms (test process saw ${Math.round(exit.at - secondAt)} ms)`,
    )
    expect(exit.code).toBe(ExitCode.SECOND_SIGNAL)
    expect(exitAfter).toBeLessThan(100 + SLACK)
  })
})

describe('duplicate signal deliveries', () => {
  it('the same signal delivered twice at once (a process group and its forwarder): drains in full, in-flight request answered, exit 0', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000 })
    const busy = await RawConnection.open(server.port)
    // A reset must fail the expectation below, not surface as an unhandled rejection.
    const slow = busy.get('/slow?ms=300&log=1').catch((error: Error) => error.message)
    await waitForEvent(server, (event) => event.event === 'request')
    // Two deliveries the child handled one after the other, not one the kernel merged.
    const handled = () => server.events.filter((event) => event.event === 'signal').length
    server.kill('SIGTERM')
    await waitForEvent(server, () => handled() === 1)
    server.kill('SIGTERM')
    await waitForEvent(server, () => handled() === 2)
    const response = await slow
    const exit = await server.exited
    expect(signalled(server, 1) - signalled(server)).toBeLessThan(DUPLICATE_SIGNAL_WINDOW_MS)
    expect(response).toMatchObject({ status: 200, headers: { connection: 'close' } })
    expect(exit.code).toBe(ExitCode.OK)
  })
})
