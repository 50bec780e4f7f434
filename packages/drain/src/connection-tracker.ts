import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { Server as NetServer, type Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'

/**
 * Why the drain saw a connection close.
 *
 * @example
 * ```ts
 * drain.onConnectionClose(({ reason }) => { if (reason === 'forced') alert('connections cut') })
 * ```
 */
export type CloseReason = 'idle' | 'after_response' | 'forced'

/**
 * Server types a drain can attach to.
 *
 * @example
 * ```ts
 * const server: DrainableServer = https.createServer({ key, cert }, app)
 * drain.attach(server)
 * ```
 */
export type DrainableServer = HttpServer | HttpsServer

interface SocketState {
  /** Requests received on the socket whose response has not finished. */
  active: number
  /** The response being produced, to add `Connection: close` once draining. */
  responses: Set<ServerResponse>
  /** Set when the drain itself closes the socket, so `close` reports why. */
  closing: CloseReason | undefined
  /** Whether the last response told the client the connection ends. */
  announcedClose: boolean
  lingerTimer: NodeJS.Timeout | undefined
  lingerCheck: NodeJS.Immediate | undefined
  bytesAtIdle: number
}

/** Callbacks from a tracker to its drain. */
export interface TrackerEvents {
  connectionOpened(): void
  connectionClosed(reason: CloseReason | undefined): void
  /** Whether responses must carry `Connection: close` right now. */
  announcing(): boolean
}

/**
 * Follows one server's sockets through the public `connection`/`request` events
 * (never by patching the server) and closes them without losing a request:
 * busy sockets once their response is out, idle keep-alive sockets after a linger.
 */
export class ConnectionTracker {
  readonly server: DrainableServer
  readonly #sockets = new Map<Socket, SocketState>()
  readonly #events: TrackerEvents
  readonly #linger: number
  #draining = false
  #closing = false
  /** `performance.now()` of the last accepted connection. */
  lastConnectionAt = Number.NEGATIVE_INFINITY
  #closed: Promise<void> | undefined
  #emptied: (() => void) | undefined
  readonly #onConnection = (socket: Socket) => this.#add(socket)
  readonly #onRequest = (req: IncomingMessage, res: ServerResponse) => this.#request(req, res)
  readonly #connectionEvent: 'connection' | 'secureConnection'

  constructor(server: DrainableServer, events: TrackerEvents, linger: number) {
    this.server = server
    this.#events = events
    this.#linger = linger
    // For TLS the HTTP layer (and req.socket) sees the TLSSocket of 'secureConnection',
    // not the raw TCP socket of 'connection'.
    this.#connectionEvent = server instanceof TlsServer ? 'secureConnection' : 'connection'
    // Prepended so the socket is known, and `Connection: close` set, before the
    // application's own listener runs and perhaps answers synchronously.
    server.prependListener(this.#connectionEvent, this.#onConnection)
    server.prependListener('request', this.#onRequest)
  }

  /** Open sockets on this server. */
  get size(): number {
    return this.#sockets.size
  }

  /** Stops listening to the server's events. */
  detach(): void {
    this.server.removeListener(this.#connectionEvent, this.#onConnection)
    this.server.removeListener('request', this.#onRequest)
  }

  /** From now on every response carries `Connection: close`, including those already in progress. */
  startDraining(): void {
    this.#draining = true
    this.refreshAnnouncements()
  }

  /**
   * Adds or removes `Connection: close` on responses whose headers are not out yet,
   * following the drain's current policy.
   */
  refreshAnnouncements(): void {
    const announce = this.#events.announcing()
    for (const state of this.#sockets.values()) {
      for (const res of state.responses) {
        if (res.headersSent) continue
        if (announce) res.setHeader('connection', 'close')
        else if (res.getHeader('connection') === 'close') res.removeHeader('connection')
      }
    }
  }

  /**
   * Closes the listener (new connections are refused by the kernel), then the
   * sockets as they become idle. Resolves once the server emitted `close`, that is
   * when every connection is gone.
   */
  close(): Promise<void> {
    this.#draining = true
    if (this.#closed !== undefined) return this.#closed
    this.#closing = true
    this.#closed = new Promise<void>((resolve) => {
      // http.Server#close() would also destroy every idle keep-alive socket at this
      // very instant (Node >= 19), resetting requests that a client already wrote but
      // the event loop has not read yet. The plain net close only stops accepting;
      // idle sockets are closed below, after a linger and a last read.
      NetServer.prototype.close.call(this.server, () => {
        // The server reports 'close' when its sockets are destroyed; their own
        // 'close' events (which this tracker counts) come one loop turn later.
        if (this.#sockets.size === 0) resolve()
        else this.#emptied = resolve
      })
    })
    this.refreshAnnouncements()
    for (const [socket, state] of this.#sockets) {
      if (state.active === 0) this.#scheduleIdleClose(socket, state)
    }
    return this.#closed
  }

  /** Destroys every remaining socket (the grace period is over). Returns how many. */
  destroyAll(): number {
    let destroyed = 0
    for (const [socket, state] of this.#sockets) {
      if (socket.destroyed) continue
      state.closing = 'forced'
      this.#clearLinger(state)
      socket.destroy()
      destroyed++
    }
    // Sockets the HTTP layer knows but this tracker never saw (a TLS handshake in progress).
    this.server.closeAllConnections()
    if (!this.#closing) NetServer.prototype.close.call(this.server)
    return destroyed
  }

  #add(socket: Socket): void {
    const state: SocketState = {
      active: 0,
      responses: new Set(),
      closing: undefined,
      announcedClose: false,
      lingerTimer: undefined,
      lingerCheck: undefined,
      bytesAtIdle: 0,
    }
    this.#sockets.set(socket, state)
    this.lastConnectionAt = performance.now()
    this.#events.connectionOpened()
    socket.once('close', () => {
      this.#clearLinger(state)
      this.#sockets.delete(socket)
      if (this.#sockets.size === 0 && this.#emptied !== undefined) {
        const emptied = this.#emptied
        this.#emptied = undefined
        // After this listener, so the drain counts the connection as closed first.
        queueMicrotask(emptied)
      }
      const reason = state.closing ?? (state.announcedClose && this.#draining ? 'after_response' : undefined)
      this.#events.connectionClosed(reason)
    })
    // A connection accepted just before the listener closed must not stay open
    // forever if its client never sends a request.
    if (this.#closing) this.#scheduleIdleClose(socket, state)
  }

  #request(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket
    // A connection accepted before attach() is adopted at its first request.
    if (!this.#sockets.has(socket)) this.#add(socket)
    const state = this.#sockets.get(socket)
    if (state === undefined) return
    state.active++
    state.responses.add(res)
    this.#clearLinger(state)
    if (this.#events.announcing()) announceClose(res)
    let done = false
    const finished = () => {
      if (done) return
      done = true
      state.active--
      state.responses.delete(res)
      if (res.getHeader('connection') === 'close' || !res.shouldKeepAlive) state.announcedClose = true
      // Node ends a socket whose response said `Connection: close` in its own
      // 'finish' listener, which ran before this one.
      if (this.#closing && state.active === 0 && !socket.destroyed && !socket.writableEnded) this.#scheduleIdleClose(socket, state)
    }
    res.once('finish', finished)
    res.once('close', finished)
  }

  #scheduleIdleClose(socket: Socket, state: SocketState): void {
    if (state.lingerTimer !== undefined || state.lingerCheck !== undefined) return
    state.bytesAtIdle = socket.bytesRead
    state.lingerTimer = setTimeout(() => {
      state.lingerTimer = undefined
      // Decide in the check phase, right after a poll phase: any request whose bytes
      // reached the kernel before now has been read and parsed by then, so the
      // socket shows up as busy (or as having read bytes) instead of being closed
      // under a request the client already sent.
      state.lingerCheck = setImmediate(() => {
        state.lingerCheck = undefined
        if (socket.destroyed || state.active > 0) return
        if (socket.bytesRead !== state.bytesAtIdle) {
          // Part of a request arrived: give it another linger to complete.
          this.#scheduleIdleClose(socket, state)
          return
        }
        state.closing = 'idle'
        socket.destroy()
      })
    }, this.#linger)
  }

  #clearLinger(state: SocketState): void {
    if (state.lingerTimer !== undefined) clearTimeout(state.lingerTimer)
    if (state.lingerCheck !== undefined) clearImmediate(state.lingerCheck)
    state.lingerTimer = undefined
    state.lingerCheck = undefined
  }
}

function announceClose(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('connection', 'close')
}
