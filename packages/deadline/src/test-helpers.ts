import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express5 from 'express'
import express4 from 'express4'

/** Both supported Express majors, for `describe.each`. */
export const expressVersions = [
  ['express 4', express4 as unknown as typeof express5],
  ['express 5', express5],
] as const

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Listens on 127.0.0.1, port 0; counts connections; `close()` tears everything down. */
export async function listen(handler: Parameters<typeof import('node:http').createServer>[1] & object, server?: Server) {
  const { createServer } = await import('node:http')
  const http = server ?? createServer(handler)
  let connections = 0
  http.on('connection', () => {
    connections++
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  const { port } = http.address() as AddressInfo
  return {
    server: http,
    origin: `http://127.0.0.1:${port}`,
    port,
    connections: () => connections,
    close: async () => {
      http.closeAllConnections()
      http.close()
      await once(http, 'close')
    },
  }
}

/** Active `Timeout` handles, as Node reports them. */
export const activeTimers = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length

/**
 * Sends one raw HTTP/1.1 request on a new connection and collects what comes
 * back until the server closes it (or `ms` pass): the bytes as latin1 text, and
 * whether the server closed the connection.
 */
export async function rawExchange(port: number, request: string, ms = 2_000): Promise<{ text: string; closedByServer: boolean }> {
  const { connect } = await import('node:net')
  const socket = connect(port, '127.0.0.1')
  socket.setEncoding('latin1')
  let text = ''
  socket.on('data', (chunk: string) => {
    text += chunk
  })
  socket.write(request)
  const closedByServer = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve(true)
    })
    socket.on('error', () => undefined)
  })
  socket.destroy()
  return { text, closedByServer }
}
