import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { Server as NetServer, Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import { ListenerProbe } from './listener-probe.js'

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

/** A probe that was not accepted after this long is given up (the listener then closes anyway). */
const PROBE_TIMEOUT_MS = 2_000
/**
 * How many more lingers blank lines (bytes Node's parser reads between requests, which
 * begin none) may buy an idle socket once closing: enough for such bytes already on
 * their way, not a way for a trickle of them to hold the drain.
 */
const QUIET_BYTES_LINGERS = 3

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
  /** `bytesRead` when the socket last had nothing in flight: more since is a request arriving. */
  bytesAtIdle: number
  /** Lingers granted since the last request for blank lines (see QUIET_BYTES_LINGERS). */
  quietLingers: number
  /** The last request answered before its body had all arrived: what comes is that body, which Node discards. */
  unread: IncomingMessage | undefined
  /** Whether the drain was told the connection closed (at a forced stop, before its 'close' event). */
  reported: boolean
}

/**
 * What a tracker does once its listener's accept queue has been worked through:
 * close the listener right now, or wait and probe again.
 *
 * @example
 * ```ts
 * const verdict: FlushVerdict = clean ? { close: true } : { close: false, retryInMs: 0 }
 * ```
 */
export type FlushVerdict = { readonly close: true } | { readonly close: false; readonly retryInMs: number }

/**
 * Decides, each time the accept queue was flushed, whether the listener closes.
 *
 * @example
 * ```ts
 * await tracker.closeListener({
 *   flushed: ({ clean }) => (clean ? { close: true } : { close: false, retryInMs: 0 }),
 *   listenerClosed: () => console.info('listener closed'),
 * })
 * ```
 */
export interface ListenerClosePolicy {
  /**
   * Runs in the callback that accepted the probe: every connection whose handshake
   * completed before the probe's has been accepted. `clean` when no other
   * connection was accepted since the probe was sent (the queue held only the probe).
   * `probed` is false (and `clean` true) for a server that cannot be probed (a pipe,
   * a cluster worker): the policy then decides on timing alone. A probe that cannot
   * connect or is not accepted within 2 s closes the listener without asking.
   */
  flushed(result: { clean: boolean; probed: boolean }): FlushVerdict
  /** Runs synchronously right after the listener closed. */
  listenerClosed(): void
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
  // Node's list of the server's connections, made when it starts listening: looked up once there.
  #connections: ConnectionsList | undefined = undefined
  readonly #sockets = new Map<Socket, SocketState>()
  readonly #events: TrackerEvents
  readonly #linger: number
  #draining = false
  #closing = false
  /** `performance.now()` when the last connection (the probe excluded) was accepted. */
  lastAcceptedAt = Number.NEGATIVE_INFINITY
  /** `performance.now()` of the last response after which its connection ends: its client may be reconnecting. */
  lastCloseAnnouncedAt = Number.NEGATIVE_INFINITY
  /** TCP connections accepted, the probe excluded. */
  #accepted = 0
  #probe: { probe: ListenerProbe; acceptedBefore: number; timer: NodeJS.Timeout } | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #retryCheck: NodeJS.Immediate | undefined
  #listenerClosed: Promise<void> | undefined
  #resolveListenerClosed: (() => void) | undefined
  #policy: ListenerClosePolicy | undefined
  #closed: Promise<void> | undefined
  /** Whether the server reported 'close': every connection, known here or not, is gone. */
  #serverClosed = false
  #sweepTimer: NodeJS.Timeout | undefined
  #sweepCheck: NodeJS.Immediate | undefined
  /** Called once no socket is left, after the drain counted the last one as closed. */
  #emptied: (() => void)[] = []
  readonly #isTls: boolean
  readonly #onRawConnection = (socket: Socket) => this.#rawConnection(socket)
  readonly #onSecureConnection = (socket: Socket) => this.#secured(socket)
  readonly #onDrop = (data?: { remoteAddress?: string; remotePort?: number }) => {
    if (data !== undefined) this.#probeArrived(data)
  }
  readonly #onRequest = (req: IncomingMessage, res: ServerResponse) => this.#request(req, res)

  constructor(server: DrainableServer, events: TrackerEvents, linger: number) {
    this.server = server
    this.#events = events
    this.#linger = linger
    // For TLS the HTTP layer (and req.socket) sees the TLSSocket of 'secureConnection',
    // not the raw TCP socket of 'connection': the raw one is followed until then.
    this.#isTls = server instanceof TlsServer
    // Prepended so the socket is known, and `Connection: close` set, before the
    // application's own listener runs and perhaps answers synchronously.
    server.prependListener('connection', this.#onRawConnection)
    if (this.#isTls) server.prependListener('secureConnection', this.#onSecureConnection)
    // With maxConnections reached, Node drops accepted connections, the probe included.
    server.on('drop', this.#onDrop)
    server.prependListener('request', this.#onRequest)
  }

  /** Open sockets on this server. */
  get size(): number {
    return this.#sockets.size
  }

  /** Stops listening to the server's events and drops a pending probe. */
  detach(): void {
    this.#cancelProbe()
    this.#cancelSweep()
    this.server.removeListener('connection', this.#onRawConnection)
    this.server.removeListener('secureConnection', this.#onSecureConnection)
    this.server.removeListener('drop', this.#onDrop)
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
    for (const state of this.#sockets.values()) announceOn(state, announce)
  }

  /** Whether `socket` is one of this tracker's (its responses' `Connection` header is then the tracker's to set). */
  tracks(socket: Socket): boolean {
    return this.#sockets.has(socket)
  }

  /**
   * Takes in a request the server never raised 'request' for (one handed to
   * 'checkContinue' or 'checkExpectation' that the application passes on to its
   * handler, and so to the drain's middleware), as if it had.
   */
  adopt(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket
    if (this.#sockets.get(socket)?.responses.has(res) === true) return
    // A connection's responses are read as their order on the wire: the one Node is
    // writing now goes first, ahead of requests pipelined behind it and seen already.
    this.#request(req, res, (socket as Socket & { _httpMessage?: unknown })._httpMessage === res)
  }

  /**
   * Whether a response ahead of `res` on its connection already went out saying the
   * connection ends: Node closes it after that response, so `res` (a request the
   * client pipelined behind it) can never be delivered, and its handler must not run.
   */
  cutOff(req: IncomingMessage, res: ServerResponse): boolean {
    const state = this.#sockets.get(req.socket)
    if (state === undefined) return false
    for (const earlier of state.responses) {
      if (earlier === res) return false
      if (earlier.headersSent && (earlier.getHeader('connection') === 'close' || !earlier.shouldKeepAlive)) return true
    }
    return false
  }

  /**
   * Closes the listener without resetting a connection the kernel already accepted
   * for it. The kernel completes handshakes on its own and queues them until the
   * process accepts them; closing the listener resets every queued one, request
   * and all. libuv accepts one connection per event-loop iteration, so that queue
   * can stay long. The tracker therefore connects to its own listener (a probe) and
   * decides only once the probe is accepted, that is once everything queued before
   * it was accepted: the policy says close (in that very callback) or probe again.
   * Resolves once the listener is closed; {@link drained} tells when every
   * connection is gone.
   */
  closeListener(policy: ListenerClosePolicy): Promise<void> {
    this.#draining = true
    if (this.#listenerClosed !== undefined) return this.#listenerClosed
    this.#policy = policy
    this.#listenerClosed = new Promise<void>((resolve) => {
      this.#resolveListenerClosed = resolve
    })
    this.#sendProbe()
    return this.#listenerClosed
  }

  /** Resolves once the listener is closed and every connection is gone. */
  drained(): Promise<void> {
    return this.#closed ?? this.#closeNow()
  }

  #sendProbe(): void {
    this.#retryTimer = undefined
    this.#retryCheck = undefined
    if (this.#closing) return
    const acceptedBefore = this.#accepted
    const probe = ListenerProbe.open(this.server, () => {
      // Could not connect to its own listener: nothing left to wait for.
      if (this.#probe?.probe === probe) this.#giveUp()
    })
    if (probe === undefined) {
      // A pipe or a cluster worker: the policy decides on timing alone.
      this.#decide({ clean: true, probed: false })
      return
    }
    // A probe that never arrives (a firewall, a saturated loop) must not hold the drain.
    const timer = setTimeout(() => {
      if (this.#probe?.probe === probe) this.#giveUp()
    }, PROBE_TIMEOUT_MS)
    this.#probe = { probe, acceptedBefore, timer }
  }

  #giveUp(): void {
    this.#clearProbe()
    this.#closeListenerNow()
  }

  /** Runs in the callback where Node accepted (or dropped) the probe. */
  #probeArrived(peer: { remoteAddress?: string | undefined; remotePort?: number | undefined }): boolean {
    const pending = this.#probe
    if (pending === undefined || !pending.probe.matches(peer)) return false
    this.#clearProbe()
    this.#decide({ clean: this.#accepted === pending.acceptedBefore, probed: true })
    return true
  }

  #decide(result: { clean: boolean; probed: boolean }): void {
    const policy = this.#policy
    if (policy === undefined || this.#closing) return
    const verdict = policy.flushed(result)
    if (verdict.close) {
      // Synchronously, in the callback that accepted the probe: no loop iteration
      // (and so no accept) between the flush and the close.
      this.#closeListenerNow()
      return
    }
    const probeAgain = () => {
      // From the check phase: the probe queues behind whatever this iteration's poll
      // phase left in the accept queue.
      this.#retryCheck = setImmediate(() => this.#sendProbe())
    }
    if (verdict.retryInMs > 0) this.#retryTimer = setTimeout(probeAgain, verdict.retryInMs)
    else probeAgain()
  }

  #closeListenerNow(): void {
    if (this.#closing) return
    void this.#closeNow()
    this.#policy?.listenerClosed()
  }

  #clearProbe(): void {
    const pending = this.#probe
    if (pending === undefined) return
    this.#probe = undefined
    clearTimeout(pending.timer)
    pending.probe.dispose()
  }

  #cancelProbe(): void {
    this.#clearProbe()
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer)
    if (this.#retryCheck !== undefined) clearImmediate(this.#retryCheck)
    this.#retryTimer = undefined
    this.#retryCheck = undefined
  }

  /**
   * Closes the listener now (new connections are refused by the kernel), then the
   * sockets as they become idle. Resolves once the server emitted `close`, that is
   * when every connection is gone.
   */
  #closeNow(): Promise<void> {
    this.#draining = true
    if (this.#closed !== undefined) return this.#closed
    this.#cancelProbe()
    this.#closing = true
    this.#closed = new Promise<void>((resolve) => {
      // The server reports 'close' when its sockets are destroyed; their own 'close'
      // events (which this tracker counts) come one loop turn later.
      const closed = () => {
        this.#serverClosed = true
        this.#cancelSweep()
        stopConnectionsCheck(this.server)
        if (this.#sockets.size === 0) resolve()
        else this.#emptied.push(resolve)
      }
      if (!this.server.listening) {
        // Not bound yet (`attach(app.listen(port))` attaches while listen() resolves
        // the host): nothing to drain, and it must not serve once bound.
        closeWhenListening(this.server)
        closed()
        return
      }
      // http.Server#close() would also destroy every idle keep-alive socket at this
      // very instant (Node >= 19), resetting requests that a client already wrote but
      // the event loop has not read yet. The plain net close only stops accepting;
      // idle sockets are closed below, after a linger and a last read.
      NetServer.prototype.close.call(this.server, closed)
    })
    const resolveListenerClosed = this.#resolveListenerClosed
    this.#resolveListenerClosed = undefined
    this.#listenerClosed ??= Promise.resolve()
    resolveListenerClosed?.()
    for (const [socket, state] of this.#sockets) {
      if (state.active === 0) this.#scheduleIdleClose(socket, state)
    }
    this.#sweepUnknown()
    return this.#closed
  }

  /**
   * A keep-alive connection accepted before attach() that brought no request since
   * is unknown here, and would keep the server open until its keepAliveTimeout. Once
   * no known socket is left, such connections get the same linger (and last read),
   * then the server closes those that are idle.
   */
  #sweepUnknown(): void {
    if (!this.#closing || this.#serverClosed || this.#sockets.size > 0) return
    if (this.#sweepTimer !== undefined || this.#sweepCheck !== undefined) return
    this.#sweepTimer = setTimeout(() => {
      this.#sweepTimer = undefined
      this.#sweepCheck = setImmediate(() => {
        this.#sweepCheck = undefined
        // One that brought a request meanwhile is known now, and closed after its response.
        if (!this.#serverClosed && this.#sockets.size === 0) this.server.closeIdleConnections()
      })
    }, this.#linger)
  }

  #cancelSweep(): void {
    if (this.#sweepTimer !== undefined) clearTimeout(this.#sweepTimer)
    if (this.#sweepCheck !== undefined) clearImmediate(this.#sweepCheck)
    this.#sweepTimer = undefined
    this.#sweepCheck = undefined
  }

  /**
   * Destroys every remaining socket (the grace period is over) and reports each as
   * closed right away, not at its 'close' event, which a saturated loop may not reach
   * before the exit. Returns how many it destroyed.
   */
  destroyAll(): number {
    let destroyed = 0
    for (const [socket, state] of this.#sockets) {
      if (!socket.destroyed) {
        state.closing = 'forced'
        this.#clearLinger(state)
        socket.destroy()
        destroyed++
      }
      this.#reportClosed(state)
    }
    // Sockets the HTTP layer knows but this tracker never saw (accepted before attach()).
    this.server.closeAllConnections()
    this.#cancelProbe()
    this.#cancelSweep()
    if (!this.#closing) {
      this.#closing = true
      NetServer.prototype.close.call(this.server, () => stopConnectionsCheck(this.server))
    }
    const resolveListenerClosed = this.#resolveListenerClosed
    this.#resolveListenerClosed = undefined
    resolveListenerClosed?.()
    return destroyed
  }

  #rawConnection(socket: Socket): void {
    if (this.#probeArrived(socket)) {
      // The probe never sends a request: end it before the HTTP layer parses anything.
      socket.destroy()
      return
    }
    this.#accepted++
    this.lastAcceptedAt = performance.now()
    // On https the raw TCP socket stands for its connection until the TLS socket takes
    // over: a client that connected but never completes its handshake (a stalled
    // client, a TCP health check) is then closed as idle instead of holding the drain.
    this.#add(socket)
  }

  /** The TLS socket takes the place of the raw one it runs on (same connection, same state). */
  #secured(socket: Socket): void {
    const raw = (socket as Socket & { _parent?: unknown })._parent
    const state = raw instanceof Socket ? this.#sockets.get(raw) : undefined
    if (state === undefined) {
      // Accepted before attach().
      this.#add(socket)
      return
    }
    this.#clearLinger(state)
    this.#sockets.delete(raw as Socket)
    this.#sockets.set(socket, state)
    state.bytesAtIdle = socket.bytesRead
    state.quietLingers = 0
    this.#watchClose(socket, state)
    if (this.#closing) this.#scheduleIdleClose(socket, state)
  }

  #add(socket: Socket): SocketState {
    const state: SocketState = {
      active: 0,
      responses: new Set(),
      closing: undefined,
      announcedClose: false,
      lingerTimer: undefined,
      lingerCheck: undefined,
      bytesAtIdle: socket.bytesRead,
      quietLingers: 0,
      unread: undefined,
      reported: false,
    }
    this.#sockets.set(socket, state)
    this.#watchClose(socket, state)
    // A connection accepted just before the listener closed must not stay open
    // forever if its client never sends a request.
    if (this.#closing) this.#scheduleIdleClose(socket, state)
    // Last: the drain may stop in here (its grace period over), destroying this socket too.
    this.#events.connectionOpened()
    return state
  }

  #watchClose(socket: Socket, state: SocketState): void {
    socket.once('close', () => {
      // A secure connection's raw socket: its TLS socket reports the close.
      if (this.#sockets.get(socket) !== state) return
      this.#clearLinger(state)
      this.#sockets.delete(socket)
      if (state.responses.size > 0) closeOrphans(state)
      if (this.#sockets.size === 0) {
        // After this 'close' event, so the drain counts the connection as closed first
        // (below), and HTTP closes the socket's response (in-flight count) in its own listener.
        for (const emptied of this.#emptied.splice(0)) queueMicrotask(emptied)
        this.#sweepUnknown()
      }
      this.#reportClosed(state)
    })
  }

  #reportClosed(state: SocketState): void {
    if (state.reported) return
    state.reported = true
    this.#events.connectionClosed(state.closing ?? (state.announcedClose && this.#draining ? 'after_response' : undefined))
  }

  #request(req: IncomingMessage, res: ServerResponse, first = false): void {
    const socket = req.socket
    // A connection accepted before attach() is adopted at its first request.
    const state = this.#sockets.get(socket) ?? this.#add(socket)
    state.active++
    if (first && state.responses.size > 0) {
      const behind = [...state.responses]
      state.responses.clear()
      state.responses.add(res)
      for (const other of behind) state.responses.add(other)
    } else state.responses.add(res)
    state.quietLingers = 0
    this.#clearLinger(state)
    if (this.#events.announcing()) announceOn(state, true)
    // Node emits 'close' exactly once per response, after 'finish' (in the same
    // tick's next-tick queue, so no request can come in between) or on a disconnect.
    res.on('close', () => {
      state.active--
      state.responses.delete(res)
      if (res.getHeader('connection') === 'close' || !res.shouldKeepAlive) {
        state.announcedClose = true
        this.lastCloseAnnouncedAt = performance.now()
      }
      if (state.active === 0) state.bytesAtIdle = socket.bytesRead
      state.unread = req.complete ? undefined : req
      // Node ends a socket whose response said `Connection: close` in its own
      // 'finish' listener, which ran before this one.
      if (this.#closing && state.active === 0 && !socket.destroyed && !socket.writableEnded) this.#scheduleIdleClose(socket, state)
    })
  }

  #scheduleIdleClose(socket: Socket, state: SocketState): void {
    if (state.lingerTimer !== undefined || state.lingerCheck !== undefined) return
    state.lingerTimer = setTimeout(() => {
      state.lingerTimer = undefined
      // Decide in the check phase, right after a poll phase: any request whose bytes
      // reached the kernel before now has been read and parsed by then, so the
      // socket shows up as busy (or as having read bytes) instead of being closed
      // under a request the client already sent.
      state.lingerCheck = setImmediate(() => {
        state.lingerCheck = undefined
        if (socket.destroyed || state.active > 0) return
        if (busyOutsideRequests(socket)) {
          // Busy with what no 'request' event showed (the bytes it read are that): look again after another linger.
          state.bytesAtIdle = socket.bytesRead
          this.#scheduleIdleClose(socket, state)
          return
        }
        // A request begun (a head in several segments, a slow client, maybe begun before the
        // drain, or pipelined in the segment of the one before): wait for the rest, as Node's own
        // closeIdleConnections() does, until gracePeriod. Bytes since the socket went idle that
        // began none buy another linger: the rest of a body Node discards after an early response
        // (Node's list calls such a socket active) and a TLS handshake, as long as they come (a
        // slow upload must not be cut under its client); blank lines between requests a few
        // times at most, as no request comes of them.
        const discarding = state.unread !== undefined && !state.unread.complete
        this.#connections ??= connectionsList(this.server)
        const begun = !discarding && socket.bytesRead > 0 && messageBegun(this.#connections, socket)
        const quiet = !begun && socket.bytesRead !== state.bytesAtIdle
        const blankLines = quiet && !discarding && (socket as Socket & { parser?: unknown }).parser !== undefined
        if (begun || (quiet && (!blankLines || state.quietLingers++ < QUIET_BYTES_LINGERS))) {
          if (quiet) state.bytesAtIdle = socket.bytesRead
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

/**
 * Whether Node still uses a socket the tracker saw no request on: a response to a
 * request handed to 'checkContinue' or 'checkExpectation' (which never raise
 * 'request') is being written, or the socket was upgraded (or tunnelled by CONNECT)
 * and is no longer HTTP, the application's to close (it is waited for until
 * gracePeriod). Read from the socket's HTTP state (Node 22 and 24): a response in
 * progress is its `_httpMessage`; an upgrade frees its parser (`null`), which a raw
 * TLS socket, parsed by its TLS socket, never had (`undefined`).
 */
function busyOutsideRequests(socket: Socket): boolean {
  const http = socket as Socket & { _httpMessage?: unknown; parser?: unknown }
  return (http._httpMessage !== null && http._httpMessage !== undefined) || http.parser === null
}

interface ConnectionsList {
  active(): { socket?: unknown }[]
}

/**
 * Whether Node's HTTP parser of `socket` is inside a message (a request begun, not
 * complete), as Node's own `closeIdleConnections()` decides: from the server's list
 * of connections, where such a socket is active. Read from that list, found by its
 * symbol's description (Node 22 and 24); without it, no message counts as begun.
 * The list counts a connection that has sent nothing yet as active: callers ask
 * only once the socket has read something. A socket with no parser (a raw TLS
 * socket, whose TLS socket parses) begins none.
 */
function messageBegun(connections: ConnectionsList | undefined, socket: Socket): boolean {
  if (connections === undefined || (socket as Socket & { parser?: unknown }).parser === undefined) return false
  // The active ones, not the idle: few during a drain, however many sockets idle.
  return connections.active().some((parser) => parser.socket === socket)
}

/** The server's list of connections (Node's private field, found by its symbol's description), if it has one. */
function connectionsList(server: DrainableServer): ConnectionsList | undefined {
  const list = nodeField(server, 'http.server.connections') as Partial<ConnectionsList> | undefined
  return typeof list?.active === 'function' ? (list as ConnectionsList) : undefined
}

/** A private field of Node's `http.Server`, by its symbol's description; `undefined` without it. */
function nodeField(server: DrainableServer, description: string): unknown {
  const key = Object.getOwnPropertySymbols(server).find((symbol) => symbol.description === description)
  return key === undefined ? undefined : (server as unknown as Record<symbol, unknown>)[key]
}

/**
 * Stops the interval on which an http.Server checks headersTimeout and requestTimeout
 * (it keeps the server reachable, and fires every 30 s, for ever). Only the server's
 * own close() stops it: the tracker closes the listener with the net close (see
 * #closeNow), and a second close() once the server closed would emit 'close' again.
 * So it is found by the description of Node's symbol (Node 22 and 24); a Node without
 * it has nothing to stop.
 */
function stopConnectionsCheck(server: DrainableServer): void {
  clearInterval(nodeField(server, 'http.server.connectionsCheckingInterval') as NodeJS.Timeout | undefined)
}

/**
 * Closes `server` with its own `close()` (which also closes its idle connections)
 * now if it listens, else as soon as it does.
 *
 * @example
 * ```ts
 * closeWhenListening(app.listen(8080)) // never serves
 * ```
 */
export function closeWhenListening(server: DrainableServer): void {
  if (server.listening) server.close()
  else server.once('listening', () => server.close())
}

/**
 * Node 22 never emits 'close' on a response still queued behind the one its
 * connection ended with (a request pipelined after a `Connection: close`
 * response, which can no longer be answered); Node 24 does. Emitted here, once
 * Node has had its turn, so every 'close' listener (the in-flight count, a
 * request's deadline) sees such a response end instead of waiting for it forever.
 */
function closeOrphans(state: SocketState): void {
  const orphans = [...state.responses]
  setImmediate(() => {
    for (const res of orphans) if (state.responses.has(res)) res.emit('close')
  })
}

/**
 * Puts `Connection: close` on the last response outstanding on a connection (or
 * takes it off them all), and never on one with requests pipelined behind it: Node
 * ends the connection after a response that says so, dropping the responses queued
 * behind it, whose handlers have run. Responses whose headers are out are left be.
 */
function announceOn(state: SocketState, announce: boolean): void {
  let last: ServerResponse | undefined
  if (announce) for (const res of state.responses) last = res
  for (const res of state.responses) {
    if (res.headersSent) continue
    if (res === last) res.setHeader('connection', 'close')
    else if (res.getHeader('connection') === 'close') res.removeHeader('connection')
  }
}
