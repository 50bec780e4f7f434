import { Pool } from 'undici'

/** One request's outcome as the client saw it. */
export interface Sample {
  /** ms since the scenario started, at the end of the request. */
  readonly at: number
  readonly method: 'GET' | 'POST'
  /** HTTP status, or 0 for a network error, -1 for a request the client itself aborted. */
  readonly status: number
  readonly latencyMs: number
  /** The answer came from the orders service's cached fallback. */
  readonly fallback: boolean
  readonly retryAfter: boolean
  /** The id of the order a 201 answered with. */
  readonly id?: string | undefined
}

/** Options of {@link LoadGenerator}. */
export interface LoadOptions {
  readonly origin: string
  /** Target request rate. */
  readonly rate: number
  /** Hard cap on requests in flight; beyond it a tick's requests are skipped (counted). */
  readonly maxInflight: number
  /** Share of POST /orders among requests. */
  readonly postShare: number
  /** Items ordered (and so looked up through the inventory). */
  readonly items: readonly string[]
  /** Hard cap on requests over the whole run. */
  readonly maxRequests: number
  readonly now: () => number
  readonly onSample: (sample: Sample) => void
}

/**
 * A paced, bounded HTTP load generator over one keep-alive pool: GET
 * /orders/:id of orders it created and POST /orders. Like a load balancer it
 * only sends while `accepting` is true (the demo turns it off when the orders
 * service's readiness says 503), and it never retries.
 */
export class LoadGenerator {
  readonly #options: LoadOptions
  readonly #pool: Pool
  readonly #orderIds: string[] = []
  // Items and orders are taken in turn, not at random: within the first second
  // every item has an order and every order is read, so the service has cached
  // stock for every item before the inventory slows down, and a fallback never
  // misses the cache by the luck of the draw.
  #nextItem = 0
  #nextOrder = 0
  #timer: NodeJS.Timeout | undefined
  #inflight = 0
  #sent = 0
  #skipped = 0
  #started = 0
  #idleWaiters: (() => void)[] = []
  accepting = true

  constructor(options: LoadOptions) {
    this.#options = options
    this.#pool = new Pool(options.origin, {
      connections: options.maxInflight,
      keepAliveTimeout: 4_000,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    })
  }

  get inflight(): number {
    return this.#inflight
  }

  get sent(): number {
    return this.#sent
  }

  get skipped(): number {
    return this.#skipped
  }

  get knownOrders(): number {
    return this.#orderIds.length
  }

  /** Creates `count` orders one by one (not measured), so GETs have something to read. */
  /** Creates `count` orders one after the other; resolves with their ids. */
  async seed(count: number): Promise<string[]> {
    const ids: string[] = []
    for (let i = 0; i < count; i++) {
      const sample = await this.#send('POST')
      if (sample.status !== 201 || sample.id === undefined) throw new Error(`seeding orders failed with status ${sample.status}`)
      ids.push(sample.id)
    }
    return ids
  }

  start(): void {
    this.#started = performance.now()
    let due = 0
    const tick = () => {
      const elapsed = (performance.now() - this.#started) / 1000
      const target = Math.floor(elapsed * this.#options.rate)
      while (due < target) {
        due++
        if (!this.accepting || this.#sent >= this.#options.maxRequests) continue
        if (this.#inflight >= this.#options.maxInflight) {
          this.#skipped++
          continue
        }
        void this.#send(Math.random() < this.#options.postShare ? 'POST' : 'GET').then(this.#options.onSample)
      }
    }
    this.#timer = setInterval(tick, 10)
  }

  /** Stops sending and waits for the requests in flight. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    if (this.#inflight > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
  }

  async close(): Promise<void> {
    await this.stop()
    await this.#pool.close()
  }

  async #send(method: 'GET' | 'POST'): Promise<Sample> {
    this.#inflight++
    this.#sent++
    const started = performance.now()
    const items = this.#options.items
    const item = method === 'POST' ? (items[this.#nextItem++ % items.length] ?? 'sku-0') : 'sku-0'
    const id = method === 'GET' ? this.#orderIds[this.#nextOrder++ % Math.max(1, this.#orderIds.length)] : undefined
    const roll = Math.random()
    // A few callers hang up early and a few send their own (tighter) budget: the
    // dashboard's client-close and header-budget series come from them.
    const abortAfter = method === 'GET' && roll < 0.03 ? 150 : undefined
    const headers: Record<string, string> = method === 'POST' ? { 'content-type': 'application/json' } : {}
    if (method === 'GET' && roll >= 0.03 && roll < 0.13) headers['request-timeout-ms'] = '300'
    const controller = abortAfter === undefined ? undefined : new AbortController()
    const timer = controller === undefined ? undefined : setTimeout(() => controller.abort(), abortAfter)
    let status = 0
    let fallback = false
    let retryAfter = false
    let created: string | undefined
    try {
      const response = await this.#pool.request({
        method,
        path: method === 'GET' ? `/orders/${id ?? '00000000-0000-0000-0000-000000000000'}` : '/orders',
        headers,
        ...(method === 'POST' ? { body: JSON.stringify({ itemId: item, quantity: 1 + Math.floor(Math.random() * 3) }) } : {}),
        ...(controller === undefined ? {} : { signal: controller.signal }),
      })
      status = response.statusCode
      retryAfter = response.headers['retry-after'] !== undefined
      const body = (await response.body.json().catch(() => undefined)) as { id?: string; stock?: { source?: string } } | undefined
      if (status === 201 && typeof body?.id === 'string') {
        created = body.id
        this.#remember(created)
      }
      fallback = status === 200 && body?.stock?.source === 'cache'
    } catch {
      status = controller?.signal.aborted === true ? -1 : 0
    } finally {
      clearTimeout(timer)
      this.#inflight--
      if (this.#inflight === 0) for (const wake of this.#idleWaiters.splice(0)) wake()
    }
    return { at: this.#options.now(), method, status, latencyMs: performance.now() - started, fallback, retryAfter, id: created }
  }

  #remember(id: string): void {
    // A bounded ring of ids to read back.
    if (this.#orderIds.length < 500) this.#orderIds.push(id)
    else this.#orderIds[Math.floor(Math.random() * 500)] = id
  }
}
