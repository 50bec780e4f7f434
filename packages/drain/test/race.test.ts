import { expect, it } from 'vitest'
import { startChildServer } from './support/child-server.js'
import { RawConnection } from './support/raw-http.js'

// With readinessDelay 0 the listener closes and idle keep-alive sockets are due to
// close as soon as the signal lands. Requests written on those idle sockets during
// the first 50 ms of the drain must still get complete responses, with
// `Connection: close`, and the server must then close the sockets itself.
it('requests written on idle keep-alive sockets 0–50 ms after draining starts get complete responses with Connection: close', async () => {
  const server = await startChildServer({ readinessDelay: 0, gracePeriod: 10_000 })
  const connections = await Promise.all(Array.from({ length: 40 }, () => RawConnection.open(server.port)))
  for (const connection of connections) {
    const warmup = await connection.get('/fast')
    expect(warmup.headers.connection).toBe('keep-alive')
  }
  // Every socket is idle now, and no connection arrived lately.
  await new Promise((resolve) => setTimeout(resolve, 100))

  server.kill('SIGTERM')
  const writtenAt: number[] = []
  const results = await Promise.all(
    connections.map(
      (connection, index) =>
        new Promise<{ status: number; connection: string | undefined; body: string; closedByServer: boolean }>((resolve, reject) => {
          // Spread over 0–78 ms after the signal: signal delivery takes a few ms, so this
          // covers 0–50 ms after the server entered `draining` (checked below).
          setTimeout(() => {
            writtenAt[index] = performance.timeOrigin + performance.now()
            connection
              .get('/fast')
              .then(async (response) => {
                await connection.closed()
                resolve({ status: response.status, connection: response.headers.connection, body: response.body, closedByServer: true })
              })
              .catch(reject)
          }, index * 2)
        }),
    ),
  )
  const exit = await server.exited
  const draining = server.events.find((event) => event.event === 'state' && event.state === 'draining')
  expect(draining).toBeDefined()
  const offsets = writtenAt.map((at) => Math.round(at - (draining?.t ?? 0)))
  console.info('[drain race] write offsets from draining start (ms):', offsets.join(' '))

  for (const result of results) {
    expect(result.status).toBe(200)
    expect(JSON.parse(result.body)).toEqual({ ok: true })
    expect(result.closedByServer).toBe(true)
  }
  // Every request written after draining started was told the connection ends.
  const afterStart = results.filter((_, index) => (offsets[index] ?? -1) >= 0)
  for (const result of afterStart) expect(result.connection).toBe('close')
  // The window the issue names is covered by real writes.
  expect(offsets.filter((offset) => offset >= 0 && offset <= 50).length).toBeGreaterThanOrEqual(15)
  expect(exit.code).toBe(0)
})
