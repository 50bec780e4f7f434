import cluster from 'node:cluster'
import net from 'node:net'

/**
 * A connection a server opens to its own listener to learn when the kernel's accept
 * queue has been worked through. The queue is first in, first out: when the probe
 * is accepted, every connection whose handshake completed before the probe's has
 * been accepted too.
 *
 * Why it is needed: libuv (>= 1.45: Node 22 and 24) accepts at most one connection per
 * event-loop iteration, so a backlog of completed handshakes can wait in the kernel for many
 * iterations, and closing the listener resets every one of them. Nothing in Node
 * reports that backlog; a probe measures it.
 *
 * @example
 * ```ts
 * const probe = ListenerProbe.open(server, () => console.log('probe could not connect'))
 * server.prependListener('connection', (socket) => {
 *   if (probe?.matches(socket)) probe.dispose() // queue flushed up to here
 * })
 * ```
 */
export class ListenerProbe {
  readonly #socket: net.Socket
  #disposed = false

  private constructor(socket: net.Socket) {
    this.#socket = socket
  }

  /**
   * Connects to the server's listening address, or returns undefined when the
   * server cannot be probed: not listening, listening on a pipe, or a cluster
   * worker (the primary owns the listener there). `failed` runs once if the
   * connection fails (for example an unreachable wildcard address).
   */
  static open(server: net.Server, failed: (error: Error) => void): ListenerProbe | undefined {
    if (cluster.isWorker || !server.listening) return undefined
    const address = server.address()
    if (address === null || typeof address === 'string') return undefined
    const host = connectableHost(address.address)
    // Never sends a byte: the listener only has to accept it.
    const socket = net.connect({ host, port: address.port, family: address.family === 'IPv6' ? 6 : 4 })
    const probe = new ListenerProbe(socket)
    socket.once('error', (error) => {
      if (probe.#disposed) return
      probe.dispose()
      failed(error)
    })
    return probe
  }

  /** Whether an accepted socket (or a `drop` event's data) is this probe. */
  matches(peer: { remotePort?: number | undefined; remoteAddress?: string | undefined }): boolean {
    if (this.#disposed || peer.remotePort === undefined) return false
    // Read only once the kernel accepted the connection: the local port exists by then.
    const local = this.#socket.address()
    if (!('port' in local) || local.port !== peer.remotePort) return false
    return unmapped(local.address) === unmapped(peer.remoteAddress ?? '')
  }

  /** Closes the client side. Idempotent. */
  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    // A late error (the server resetting its side) must not become an uncaught one.
    this.#socket.on('error', () => {})
    this.#socket.destroy()
  }
}

function connectableHost(address: string): string {
  if (address === '0.0.0.0') return '127.0.0.1'
  if (address === '::') return '::1'
  return address
}

function unmapped(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address
}
