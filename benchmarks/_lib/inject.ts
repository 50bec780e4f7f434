// In-memory HTTP: requests written into one end of a `stream.duplexPair()` whose other
// end the real `http.Server` gets as a connection, so the server's parser, Express
// and every middleware run exactly as over TCP, without the kernel. Used where a run
// needs millions of requests (memory retention), which autocannon cannot drive in
// the time budget. A tiny keep-alive client: one request in flight per connection,
// responses framed by content-length (every benchmark route sends one).
import type { Server } from 'node:http'
import { duplexPair } from 'node:stream'

export interface InjectResult {
  readonly requests: number
  readonly non2xx: number
  readonly ms: number
}

const HEADER_END = Buffer.from('\r\n\r\n')

/**
 * Sends `total` GET requests for `paths` (cycled) over `connections` in-memory
 * keep-alive connections to `server` (which need not listen). Bounded by `total`
 * and by `timeoutMs`: rejects if the requests have not all completed by then.
 */
export function inject(
  server: Server,
  options: { paths: readonly string[]; total: number; connections: number; timeoutMs: number },
): Promise<InjectResult> {
  const { paths, total, connections, timeoutMs } = options
  const started = performance.now()
  let sent = 0
  let done = 0
  let non2xx = 0
  return new Promise<InjectResult>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`inject: ${done}/${total} requests after ${timeoutMs} ms`)), timeoutMs)
    const sockets: { destroy(): void }[] = []
    const finish = (error?: Error) => {
      clearTimeout(timer)
      for (const socket of sockets) socket.destroy()
      if (error !== undefined) reject(error)
      else resolve({ requests: done, non2xx, ms: performance.now() - started })
    }
    const open = () => {
      const [client, serverSide] = duplexPair()
      sockets.push(client, serverSide)
      server.emit('connection', serverSide)
      let buffer = Buffer.alloc(0)
      const next = () => {
        if (sent >= total) return
        const path = paths[sent % paths.length] as string
        sent++
        client.write(`GET ${path} HTTP/1.1\r\nhost: bench\r\n\r\n`)
      }
      client.on('data', (chunk: Buffer) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
        for (;;) {
          const end = buffer.indexOf(HEADER_END)
          if (end === -1) return
          const head = buffer.subarray(0, end).toString('latin1')
          const match = /\r\ncontent-length: *(\d+)/i.exec(head)
          if (match === null) {
            finish(new Error(`inject: response without content-length: ${head.slice(0, 200)}`))
            return
          }
          const length = end + 4 + Number(match[1])
          if (buffer.length < length) return
          const status = Number(head.slice(9, 12))
          if (status < 200 || status > 299) non2xx++
          buffer = buffer.subarray(length)
          done++
          if (done === total) {
            finish()
            return
          }
          next()
        }
      })
      client.on('error', (error: Error) => finish(error))
      next()
    }
    for (let i = 0; i < connections; i++) open()
  })
}
