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
}

/** How a client socket ended: `end` = a FIN; `error` = reset or the like; `close` = closed with neither. */
interface Ending {
  how: 'end' | 'error' | 'close'
  /** Wall-clock ms (comparable with the child's `t`). */
  at: number
}

// With readinessDelay 0 the listener closes and idle keep-alive sockets are due to
// close as soon as the signal lands. Requests written on those idle sockets during
// the first 50 ms of the drain must still get complete responses, with
// `Connection: close`, and the server must then close the sockets itself: each client
// socket sees the server's FIN ('end', not an error), and the child logs the close of
// each one (Node's socket 'close', which a socket closed by the kernel at exit never
// emits) before its `stopped` state. That log, not the order in which this process
// reads the FINs and the child's output (two descriptors ready in one poll, in no
// set order on a loaded machine), is what shows the server closed them itself.
// Writes start at the kill and go on, one per 2 ms on average, until 60 ms after the
// child reported `draining`: however late a loaded machine delivers the signal, the
// window is covered.
it('requests written on idle keep-alive sockets 0–50 ms after draining starts get complete responses with Connection: close; the server ends every socket (FIN) before it stops', async () => {
  const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000, logConnections: true })
  const connections = await Promise.all(Array.from({ length: POOL }, () => RawConnection.open(server.port)))
  const warmups = await Promise.all(connections.map((connection) => connection.get('/fast')))
  for (const warmup of warmups) expect(warmup.headers.connection).toBe('keep-alive')
  // Every socket is idle now, and no connection arrived lately.
  await new Promise((resolve) => setTimeout(resolve, 100))

  const wallClock = () => performance.timeOrigin + performance.now()
  const draining = () => server.events.find((event) => event.event === 'state' && event.state === 'draining')
  const ports = connections.map((connection) => connection.socket.localPort)
  const endings = connections.map((connection) => {
    const ending: { value?: Ending } = {}
    const record = (how: Ending['how']) => () => {
      ending.value ??= { how, at: wallClock() }
    }
    connection.socket.once('end', record('end'))
    connection.socket.once('error', record('error'))
    connection.socket.once('close', record('close'))
    return ending
  })
  const write = (connection: RawConnection): Promise<Result> =>
    connection.get('/fast').then(async (response) => {
      await connection.closed()
      return { status: response.status, connection: response.headers.connection, body: response.body }
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
  const settled = await Promise.all(results)
  const exit = await server.exited
  // Every socket has ended by now (at the latest when the child exited); bounded all the same.
  await Promise.race([
    Promise.all(connections.map((connection) => connection.closed())),
    new Promise((resolve) => setTimeout(resolve, 5_000)),
  ])
  for (const connection of connections) connection.socket.destroy()
  const start = draining()
  expect(start).toBeDefined()
  const offsets = writtenAt.map((at) => Math.round(at - (start?.t ?? 0)))
  console.info(`[drain race] ${offsets.length} writes, offsets from draining start (ms): ${offsets.join(' ')}`)
  // The child's own order of events: a socket it closed itself is logged before `stopped`.
  const stoppedIndex = server.events.findIndex((event) => event.event === 'state' && event.state === 'stopped')
  const closedInChild = new Map(
    server.events
      .map((event, index) => ({ event, index }))
      .filter(({ event }) => event.event === 'connection-closed')
      .map(({ event, index }) => [event.port, { index, hadError: event.hadError, t: event.t }]),
  )
  const endedAfter = endings.slice(0, settled.length).map((ending) => Math.round((ending.value?.at ?? Number.NaN) - (start?.t ?? 0)))
  console.info(`[drain race] written sockets ended by the server (ms after draining start): ${endedAfter.join(' ')}`)

  for (const result of settled) {
    expect(result.status).toBe(200)
    expect(JSON.parse(result.body)).toEqual({ ok: true })
  }
  expect(stoppedIndex).toBeGreaterThan(0)
  // Every socket, written on or left idle: ended by the server's FIN, closed by the child before it stopped.
  const how = ports.map((port, index) => ({
    ending: endings[index]?.value?.how,
    closedInChild: closedInChild.has(port) ? 'closed' : 'not closed',
    beforeStopped: (closedInChild.get(port)?.index ?? Number.POSITIVE_INFINITY) < stoppedIndex,
    hadError: closedInChild.get(port)?.hadError,
  }))
  expect(how).toEqual(connections.map(() => ({ ending: 'end', closedInChild: 'closed', beforeStopped: true, hadError: false })))
  // Every request written after draining started was told the connection ends.
  const afterStart = settled.filter((_, index) => (offsets[index] ?? -1) >= 0)
  for (const result of afterStart) expect(result.connection).toBe('close')
  // The window the issue names is covered by real writes.
  expect(offsets.filter((offset) => offset >= 0 && offset <= 50).length).toBeGreaterThanOrEqual(15)
  expect(exit.code).toBe(0)
})
