import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { selfSigned } from '../test/support/certificate.js'
import { rawConnection } from '../test/support/raw-http.js'
import { Drain } from './drain.js'

// The connection tracker with what a 'request' listener does not see: requests Node
// hands to other events, and TLS connections before and after their handshake.

/** Sends `payload` in one write; returns what came back within `ms`. */
async function exchange(port: number, payload: string, ms = 1_000): Promise<string> {
  const connection = rawConnection(port)
  connection.socket.write(payload)
  await new Promise((resolve) => setTimeout(resolve, ms))
  connection.socket.destroy()
  return connection.text()
}

const REQ = 'POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n'

async function serve(withDrain: boolean) {
  const server = http.createServer((_req, res) => res.end('ok'))
  // A one-shot checkContinue handler (e.g. a warm-up gate), as Node's docs show it.
  server.once('checkContinue', (req, res) => {
    res.writeContinue()
    server.emit('request', req, res)
  })
  const drain = withDrain
    ? new Drain({ signals: false, exit: false, logger: false, readinessDelay: 0, registry: new Registry() })
    : undefined
  drain?.attach(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return { server, drain, port }
}

describe('requests that never raise "request"', () => {
  it('the drain adds no listener for checkContinue, checkExpectation, upgrade or connect: Node and the application handle them as without it', async () => {
    const server = http.createServer()
    server.on('checkContinue', () => {})
    server.on('upgrade', () => {})
    const drain = new Drain({ signals: false, exit: false, logger: false, registry: new Registry() })
    drain.attach(server)
    server.on('connect', () => {})
    expect(['checkContinue', 'checkExpectation', 'upgrade', 'connect'].map((event) => server.listenerCount(event))).toEqual([1, 0, 1, 1])
    drain[Symbol.dispose]()
  })

  it('a request pipelined right after the application removed its checkContinue listener is answered as without a drain', async () => {
    const counts: Record<string, number> = {}
    for (const withDrain of [false, true]) {
      const { server, drain, port } = await serve(withDrain)
      const text = await exchange(port, REQ + REQ)
      counts[withDrain ? 'with drain' : 'without drain'] = text.match(/HTTP\/1\.1 200/g)?.length ?? 0
      server.closeAllConnections()
      server.close()
      drain?.[Symbol.dispose]()
    }
    expect(counts).toEqual({ 'without drain': 2, 'with drain': 2 })
  })
})

let dir: string
let key: Buffer
let cert: Buffer
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ballast-tls-pipe-'))
  ;({ key, cert } = await selfSigned())
})
afterAll(async () => rm(dir, { recursive: true, force: true }))

/** A TLS connection over the pipe that sends one request and collects the answer. */
function client(path: string) {
  const socket = tls.connect({ path, rejectUnauthorized: false })
  let text = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => {
    text += chunk
  })
  socket.on('error', () => undefined)
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return { socket, text: () => text, closed, secure: once(socket, 'secureConnect') }
}

describe('https on a unix socket (no remote address or port)', () => {
  it('counts each connection once and lets both in-flight requests finish', async () => {
    const drain = new Drain({
      signals: false,
      exit: false,
      logger: false,
      readinessDelay: 0,
      idleLinger: 50,
      gracePeriod: 5_000,
      registry: new Registry(),
    })
    const server = https.createServer({ key, cert }, (_req, res) => {
      setTimeout(() => res.end('done'), 500)
    })
    drain.attach(server)
    const path = join(dir, 'server.sock')
    server.listen(path)
    await once(server, 'listening')
    // Two clients connecting together: both TCP accepts come before either handshake ends.
    const a = client(path)
    const b = client(path)
    await Promise.all([a.secure, b.secure])
    await new Promise((resolve) => setTimeout(resolve, 50))
    const open = drain.openConnections
    for (const c of [a, b]) c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const report = await drain.shutdown()
    await Promise.all([a.closed, b.closed])
    expect({
      open,
      answered: [a, b].map((c) => /HTTP\/1\.1 200[\s\S]*done/.test(c.text())),
      outcome: report.outcome,
    }).toEqual({ open: 2, answered: [true, true], outcome: 'ok' })
    drain[Symbol.dispose]()
  })
})

// drain.middleware() takes in an Expect request when it runs, after a request pipelined
// behind it raised 'request': the tracker must still see them in their order on the wire.
it('a checkContinue request whose handler is deferred, pipelined with a GET, while draining: both answered', async () => {
  const drain = new Drain({
    signals: false,
    exit: false,
    logger: false,
    readinessDelay: 400,
    gracePeriod: 2_000,
    idleLinger: 50,
    registry: new Registry(),
  })
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    drain.middleware()(req as never, res as never, () => res.end(`answer ${req.url}`))
  }
  const server = http.createServer(handler)
  // An asynchronous gate before the application (an auth look-up), then the application.
  server.on('checkContinue', (req, res) => {
    setTimeout(() => {
      res.writeContinue()
      handler(req, res)
    }, 30)
  })
  drain.attach(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  const shutdown = drain.shutdown()
  await new Promise((resolve) => setTimeout(resolve, 50)) // draining, listener still open
  const connection = rawConnection(port)
  connection.socket.write(
    'POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n',
  )
  const report = await shutdown
  connection.socket.destroy()
  const text = connection.text()
  expect({ a: text.includes('answer /a'), b: text.includes('answer /b'), outcome: report.outcome }).toEqual({
    a: true,
    b: true,
    outcome: 'ok',
  })
})
