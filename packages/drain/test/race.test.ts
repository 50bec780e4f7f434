import { expect, it } from 'vitest'
import { startChildServer } from './support/child-server.js'
import { RawConnection } from './support/raw-http.js'

/** Idle keep-alive connections available for writes; more than the writes ever need. */
const POOL = 160
/** One write per this many ms on average, whatever the timer jitter of a loaded machine. */
const CADENCE_MS = 2

interface Result {
  status: number
  connection: string | undefined
  body: string
  closedByServer: boolean
}

// With readinessDelay 0 the listener closes and idle keep-alive sockets are due to
// close as soon as the signal lands. Requests written on those idle sockets during
// the first 50 ms of the drain must still get complete responses, with
// `Connection: close`, and the server must then close the sockets itself.
// Writes start at the kill and go on, one per 2 ms on average, until 60 ms after the
// child reported `draining`: however late a loaded machine delivers the signal, the
// window is covered.
it('requests written on idle keep-alive sockets 0–50 ms after draining starts get complete responses with Connection: close', async () => {
  const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000 })
  const connections = await Promise.all(Array.from({ length: POOL }, () => RawConnection.open(server.port)))
  const warmups = await Promise.all(connections.map((connection) => connection.get('/fast')))
  for (const warmup of warmups) expect(warmup.headers.connection).toBe('keep-alive')
  // Every socket is idle now, and no connection arrived lately.
  await new Promise((resolve) => setTimeout(resolve, 100))

  const wallClock = () => performance.timeOrigin + performance.now()
  const draining = () => server.events.find((event) => event.event === 'state' && event.state === 'draining')
  const write = (connection: RawConnection): Promise<Result> =>
    connection.get('/fast').then(async (response) => {
      await connection.closed()
      return { status: response.status, connection: response.headers.connection, body: response.body, closedByServer: true }
    })

  const killedAt = wallClock()
  server.kill('SIGTERM')
  const writtenAt: number[] = []
  const results: Promise<Result>[] = []
  while (results.length < POOL) {
    const started = draining()
    if (started !== undefined && wallClock() > started.t + 60) break
    const due = Math.min(POOL, Math.floor((wallClock() - killedAt) / CADENCE_MS) + 1)
    while (results.length < due) {
      const connection = connections[results.length] as RawConnection
      writtenAt.push(wallClock())
      results.push(write(connection))
    }
    await new Promise((resolve) => setTimeout(resolve, CADENCE_MS))
  }
  const unused = connections.slice(results.length)
  const settled = await Promise.all(results)
  const exit = await server.exited
  for (const connection of unused) connection.socket.destroy()
  const start = draining()
  expect(start).toBeDefined()
  const offsets = writtenAt.map((at) => Math.round(at - (start?.t ?? 0)))
  console.info(`[drain race] ${offsets.length} writes, offsets from draining start (ms): ${offsets.join(' ')}`)

  for (const result of settled) {
    expect(result.status).toBe(200)
    expect(JSON.parse(result.body)).toEqual({ ok: true })
    expect(result.closedByServer).toBe(true)
  }
  // Every request written after draining started was told the connection ends.
  const afterStart = settled.filter((_, index) => (offsets[index] ?? -1) >= 0)
  for (const result of afterStart) expect(result.connection).toBe('close')
  // The window the issue names is covered by real writes.
  expect(offsets.filter((offset) => offset >= 0 && offset <= 50).length).toBeGreaterThanOrEqual(15)
  expect(exit.code).toBe(0)
})
