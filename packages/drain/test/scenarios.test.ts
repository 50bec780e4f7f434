import { afterEach, expect, it, vi } from 'vitest'
import { ExitCode } from '../src/exit-codes.js'
import { type ChildServer, type Scenario, startScenario } from './support/child-server.js'
import { rawConnection } from './support/raw-http.js'

const running: ChildServer[] = []

async function start(scenario: Scenario, options: { gracePeriod?: number; readinessDelay?: number } = {}): Promise<ChildServer> {
  const server = await startScenario(scenario, options)
  running.push(server)
  return server
}

// Every child is gone after its test, whatever the test did: a hung one is killed.
afterEach(async () => {
  for (const server of running.splice(0)) {
    if (server.child.exitCode === null && server.child.signalCode === null) server.kill('SIGKILL')
    await server.exited
  }
})

/** Resolves once the child printed an event that matches (bounded at 5 s). */
async function waitForEvent(server: ChildServer, match: (event: ChildServer['events'][number]) => boolean): Promise<void> {
  for (let waited = 0; !server.events.some(match); waited += 5) {
    if (waited > 5_000) throw new Error(`the child printed no such event within 5 s: ${JSON.stringify(server.events)}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const names = (server: ChildServer) => server.events.map(({ event, state }) => (state === undefined ? event : `${event}:${state}`))

it('a SIGTERM during an async start-up (readinessDelay > 0): the server attached after it is drained and closed, hooks run, exit 0', async () => {
  const server = await start('attach-after-start-up', { readinessDelay: 600 })
  server.kill('SIGTERM')
  const exit = await server.exited
  expect({ code: exit.code, stderr: server.stderr() }).toEqual({ code: ExitCode.OK, stderr: '' })
  expect(names(server)).toEqual([
    'ready',
    'state:draining',
    'attached',
    'listening',
    'state:closing',
    'server-closed',
    'hook',
    'state:stopped',
    'exit',
  ])
})

it('exit: false: once the drain stopped, its signal listeners are gone and a SIGTERM ends the process as usual', async () => {
  const server = await start('exit-false')
  await waitForEvent(server, ({ state }) => state === 'stopped')
  server.kill('SIGTERM')
  const exit = await server.exited
  expect({ code: exit.code, signal: exit.signal }).toEqual({ code: null, signal: 'SIGTERM' })
  expect(names(server)).not.toContain('still-running')
})

it('requests that never raise "request" are waited for: an upgrade whose handler is still running, an Expect: 100-continue request, a WebSocket closed from drain.signal', async () => {
  const server = await start('upgrade-and-continue')
  const upgrade = (kind: string) => `GET /socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${kind}\r\n\r\n`
  const slow = rawConnection(server.port)
  slow.socket.write(upgrade('x-slow'))
  const upload = rawConnection(server.port)
  upload.socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n')
  const websocket = rawConnection(server.port)
  websocket.socket.write(upgrade('x-test'))
  await vi.waitFor(() => expect(upload.text()).toContain('100 Continue'), { timeout: 5_000 })
  upload.socket.write('hello')
  await vi.waitFor(() => expect(websocket.text()).toContain('101 Switching Protocols'), { timeout: 5_000 })
  // The body has been read, and the slow upgrade's handler is still running (400 ms).
  await new Promise((resolve) => setTimeout(resolve, 50))
  server.kill('SIGTERM')
  await Promise.all([slow.closed, upload.closed, websocket.closed])
  const exit = await server.exited
  expect.soft(slow.text()).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n[\s\S]*\r\n\r\nbye$/)
  expect
    .soft(upload.text())
    .toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n[\s\S]*connection: close\r\n[\s\S]*\{"ok":true\}$/i)
  expect.soft(websocket.text().split('\r\n\r\n')[1]).toBe('close-frame\nclosed\n')
  expect(exit.code).toBe(ExitCode.OK)
})
