import type { OrdersConfig } from './config.js'

/** An order as stored. */
export interface Order {
  readonly id: string
  readonly itemId: string
  readonly quantity: number
  readonly reservationId: string
  /** Unix milliseconds. */
  readonly createdAt: number
}

/** Where orders live: the embedded SQLite file, or PostgreSQL when `DATABASE_URL` is set. */
export interface OrderStore {
  /** `sqlite` or `postgres`, for logs and the readiness of the demo. */
  readonly kind: 'sqlite' | 'postgres'
  insert(order: Order): Promise<void>
  get(id: string): Promise<Order | undefined>
  count(): Promise<number>
  /** Closes the connection(s); called by the drain's last hook, once no request can write. */
  close(): Promise<void>
}

/**
 * Opens the store the configuration asks for and creates its table.
 *
 * @example
 * ```ts
 * const store = await openOrderStore(loadOrdersConfig(process.env))
 * drain.onShutdown('store', () => store.close(), { timeout: 5_000 })
 * ```
 */
export async function openOrderStore(config: Pick<OrdersConfig, 'databaseUrl' | 'sqlitePath'>): Promise<OrderStore> {
  if (config.databaseUrl !== undefined) {
    const { openPostgresStore } = await import('./postgres-store.js')
    return openPostgresStore(config.databaseUrl)
  }
  const { openSqliteStore } = await import('./sqlite-store.js')
  return openSqliteStore(config.sqlitePath)
}
