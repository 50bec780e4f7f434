import net from 'node:net'

/** A raw HTTP/1.1 response as read off the socket. */
export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/** Whether `buffer` holds a complete response with a Content-Length body; returns it, or undefined. */
export function parseResponse(buffer: string): RawResponse | undefined {
  const end = buffer.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine = '', ...lines] = buffer.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const length = Number(headers['content-length'] ?? 0)
  const body = buffer.slice(end + 4)
  if (Buffer.byteLength(body) < length) return undefined
  return { status: Number(statusLine.split(' ')[1]), headers, body: body.slice(0, length) }
}

/** A raw keep-alive connection that sends one request at a time and reads whole responses. */
export class RawConnection {
  readonly socket: net.Socket
  #buffer = ''
  #waiting: ((response: RawResponse) => void) | undefined
  #failed: ((error: Error) => void) | undefined
  /** Set once the server ended or reset the connection. */
  ended: 'end' | 'error' | undefined

  private constructor(socket: net.Socket) {
    this.socket = socket
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk
      const response = parseResponse(this.#buffer)
      if (response !== undefined && this.#waiting !== undefined) {
        this.#buffer = ''
        const resolve = this.#waiting
        this.#waiting = undefined
        this.#failed = undefined
        resolve(response)
      }
    })
    socket.on('end', () => {
      this.ended ??= 'end'
      this.#failed?.(new Error(`connection ended before a complete response: ${JSON.stringify(this.#buffer)}`))
    })
    socket.on('error', (error) => {
      this.ended ??= 'error'
      this.#failed?.(error)
    })
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawConnection(socket)))
      socket.once('error', reject)
    })
  }

  /** Writes a GET and resolves with the complete response (rejects if the connection dies first). */
  get(path: string): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      this.#waiting = resolve
      this.#failed = reject
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`)
    })
  }

  /**
   * Writes a GET in two parts, its request line first and the rest once `between`
   * resolves (a head split across TCP segments, a slow client), and resolves with the
   * complete response (rejects if the connection dies first).
   */
  getInTwoParts(path: string, between: () => Promise<void>): Promise<RawResponse> {
    const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`
    const cut = request.indexOf('\r\n') + 2
    const response = new Promise<RawResponse>((resolve, reject) => {
      this.#waiting = resolve
      this.#failed = reject
    })
    this.socket.write(request.slice(0, cut))
    void between().then(() => {
      if (!this.socket.destroyed) this.socket.write(request.slice(cut))
    })
    return response
  }

  /** Resolves when the server closed the connection. */
  closed(): Promise<void> {
    if (this.socket.destroyed || this.ended !== undefined) return Promise.resolve()
    return new Promise((resolve) => this.socket.once('close', () => resolve()))
  }
}

/** A raw connection to 127.0.0.1:`port`: what it received, and when the server closed it (bounded at 5 s). */
export function rawConnection(port: number): { socket: net.Socket; text(): string; closed: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1')
  let text = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => {
    text += chunk
  })
  socket.on('error', () => undefined)
  const closed = new Promise<void>((resolve) => {
    const timer = setTimeout(() => socket.destroy(), 5_000)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
  return { socket, text: () => text, closed }
}
