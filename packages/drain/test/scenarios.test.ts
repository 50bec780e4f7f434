import { afterEach, expect, it } from 'vitest'
import { ExitCode } from '../src/exit-codes.js'
import { type ChildServer, type Scenario, startScenario } from './support/child-server.js'

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
