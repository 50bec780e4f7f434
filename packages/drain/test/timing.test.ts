import { describe, expect, it } from 'vitest'
import { ExitCode } from '../src/exit-codes.js'
import { startChildServer } from './support/child-server.js'
import { RawConnection } from './support/raw-http.js'

// Bounds: the figure plus LOADED_MACHINE ms for a busy 2-core CI runner.
// Wrong behaviour (waiting for keepAliveTimeout, for gracePeriod, or for a hung hook)
// is seconds away from every bound. Measured numbers are printed.
const LOADED_MACHINE = 750

describe('time from signal to exit', () => {
  it('readinessDelay 0 and keepAliveTimeout 65 s: exits within the longest in-flight request + 250 ms', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000, keepAliveTimeout: 65_000 })
    const idle = await Promise.all(Array.from({ length: 8 }, () => RawConnection.open(server.port)))
    for (const connection of idle) await connection.get('/fast')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const busy = await RawConnection.open(server.port)
    const slow = busy.get('/slow?ms=300')
    const sentAt = performance.now()
    // The request is in flight: let the server start it.
    await new Promise((resolve) => setTimeout(resolve, 20))
    const signalAt = server.kill('SIGTERM')
    const response = await slow
    const exit = await server.exited
    const longestInflight = sentAt + 300 - signalAt
    const exitAfter = exit.at - signalAt
    console.info(`[drain timing] in-flight ${Math.round(longestInflight)} ms left at the signal, exit after ${Math.round(exitAfter)} ms`)
    expect(response.status).toBe(200)
    expect(response.headers.connection).toBe('close')
    expect(exit.code).toBe(ExitCode.OK)
    expect(exitAfter).toBeGreaterThanOrEqual(longestInflight - 20)
    expect(exitAfter).toBeLessThan(longestInflight + 250 + LOADED_MACHINE)
    for (const connection of idle) expect(connection.ended).toBe('end')
  })

  it('idle keep-alive sockets only: exits after the idle linger, not after keepAliveTimeout', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000, keepAliveTimeout: 65_000 })
    const idle = await Promise.all(Array.from({ length: 8 }, () => RawConnection.open(server.port)))
    for (const connection of idle) await connection.get('/fast')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const signalAt = server.kill('SIGTERM')
    const exit = await server.exited
    const exitAfter = exit.at - signalAt
    console.info(`[drain timing] idle keep-alive only: exit after ${Math.round(exitAfter)} ms (idle linger 250 ms)`)
    expect(exit.code).toBe(ExitCode.OK)
    expect(exitAfter).toBeGreaterThanOrEqual(250)
    expect(exitAfter).toBeLessThan(250 + 250 + LOADED_MACHINE)
  })

  it('no connection at all: exits at once', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000 })
    const signalAt = server.kill('SIGINT')
    const exit = await server.exited
    const exitAfter = exit.at - signalAt
    console.info(`[drain timing] no connection: exit after ${Math.round(exitAfter)} ms`)
    expect(exit.code).toBe(ExitCode.OK)
    expect(exitAfter).toBeLessThan(250 + LOADED_MACHINE)
  })

  it('a hung hook: exits by gracePeriod + 250 ms with GRACE_PERIOD_EXCEEDED', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 1_000, hook: 'hang' })
    const signalAt = server.kill('SIGTERM')
    const exit = await server.exited
    const exitAfter = exit.at - signalAt
    console.info(`[drain timing] hung hook, gracePeriod 1000 ms: exit ${exit.code} after ${Math.round(exitAfter)} ms`)
    expect(exit.code).toBe(ExitCode.GRACE_PERIOD_EXCEEDED)
    expect(exitAfter).toBeGreaterThanOrEqual(1_000 - 20)
    expect(exitAfter).toBeLessThan(1_000 + 250 + LOADED_MACHINE)
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
    const exitAfter = exit.at - signalAt
    console.info(`[drain timing] never-ending request, gracePeriod 1000 ms: exit ${exit.code} after ${Math.round(exitAfter)} ms`)
    expect(await hung).toBe('destroyed')
    expect(exit.code).toBe(ExitCode.GRACE_PERIOD_EXCEEDED)
    expect(exitAfter).toBeGreaterThanOrEqual(1_000 - 20)
    expect(exitAfter).toBeLessThan(1_000 + 250 + LOADED_MACHINE)
  })

  it('a second signal exits within 100 ms with SECOND_SIGNAL', async () => {
    const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000 })
    const connection = await RawConnection.open(server.port)
    void connection.get('/hang').catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 20))
    server.kill('SIGTERM')
    // Wait until the first signal was handled, so the second one is a second one.
    for (let waited = 0; !server.events.some((event) => event.state === 'closing') && waited < 5_000; waited += 10) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    const secondAt = server.kill('SIGTERM')
    const exit = await server.exited
    const exitAfter = exit.at - secondAt
    console.info(`[drain timing] second signal: exit ${exit.code} after ${Math.round(exitAfter)} ms`)
    expect(exit.code).toBe(ExitCode.SECOND_SIGNAL)
    expect(exitAfter).toBeLessThan(100 + LOADED_MACHINE / 2)
  })
})
