import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { Registry } from 'prom-client'
import { expect, it } from 'vitest'
import { Drain } from '../src/drain.js'
import { RawConnection } from './support/raw-http.js'

// libuv (>= 1.45: Node 22 and 24) accepts one connection per event-loop iteration. When every
// iteration is long (many busy keep-alive sockets on a loaded machine), connections
// whose handshake the kernel already completed wait in the listen socket's accept
// queue, their request unread, for many iterations; closing the listener then
// resets them. Here each iteration is made 30 ms long, so that closing starts with
// connections still queued: every one of them must be accepted and answered.
it('connections still waiting in the accept queue when closing starts are accepted and answered, never reset', async () => {
  const drain = new Drain({ signals: false, exit: false, logger: false, readinessDelay: 0, registry: new Registry() })
  const app = express()
  app.use(drain.middleware())
  app.get('/fast', (_req, res) => {
    res.json({ ok: true })
  })
  const server = http.createServer(app)
  drain.attach(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  let accepted = 0
  let requests = 0
  // The drain's own probe connections show up here too: only ever 1 while idle.
  server.on('connection', () => accepted++)
  server.on('request', () => requests++)

  let busy = true
  const burn = () => {
    const until = performance.now() + 30
    while (performance.now() < until) {
      // A long iteration, as under load.
    }
    if (busy) setImmediate(burn)
  }
  setImmediate(burn)
  const connections = await Promise.all(Array.from({ length: 8 }, () => RawConnection.open(port)))
  const responses = connections.map((connection) =>
    connection.get('/fast').then(
      (response) => ({ status: response.status, connection: response.headers.connection }),
      (error: NodeJS.ErrnoException) => ({ status: 0, connection: error.code ?? error.message }),
    ),
  )
  const acceptedWhenClosing = accepted
  const report = await drain.shutdown('test')
  busy = false
  const results = await Promise.all(responses)
  for (const connection of connections) connection.socket.destroy()
  drain[Symbol.dispose]()
  console.info('[drain accept queue] accepted when closing started:', acceptedWhenClosing, 'of 8; results:', JSON.stringify(results))

  // The premise: closing started while connections were still in the accept queue.
  expect(acceptedWhenClosing).toBeLessThan(8)
  expect(results).toEqual(Array.from({ length: 8 }, () => ({ status: 200, connection: 'close' })))
  expect(requests).toBe(8)
  expect(report.outcome).toBe('ok')
  expect(server.listening).toBe(false)
})
