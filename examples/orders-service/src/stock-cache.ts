/** Stock of an item as the orders service answers it. */
export interface StockView {
  readonly itemId: string
  readonly available: number
  /** Unix ms when the inventory said so. */
  readonly asOf: number
  /** `inventory`: fresh; `cache`: the last known answer, served by the fallback. */
  readonly source: 'inventory' | 'cache'
}

/**
 * The last known stock per item, bounded: the oldest entry goes first once
 * `capacity` items are held, so a stream of unknown ids cannot grow it.
 *
 * @example
 * ```ts
 * const cache = new StockCache(10_000)
 * cache.set('sku-1', { itemId: 'sku-1', available: 3, asOf: Date.now(), source: 'inventory' })
 * ```
 */
export class StockCache {
  readonly #capacity: number
  readonly #entries = new Map<string, StockView>()

  constructor(capacity: number) {
    this.#capacity = capacity
  }

  get(itemId: string): StockView | undefined {
    return this.#entries.get(itemId)
  }

  set(itemId: string, stock: StockView): void {
    this.#entries.delete(itemId)
    this.#entries.set(itemId, stock)
    if (this.#entries.size > this.#capacity) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
  }

  get size(): number {
    return this.#entries.size
  }
}
