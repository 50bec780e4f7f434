import pg from 'pg'
import type { Order, OrderStore } from './order-store.js'

class PostgresOrderStore implements OrderStore {
  readonly kind = 'postgres'
  readonly #pool: pg.Pool
  #closed = false

  constructor(pool: pg.Pool) {
    this.#pool = pool
  }

  async insert(order: Order): Promise<void> {
    await this.#pool.query('INSERT INTO orders (id, item_id, quantity, reservation_id, created_at) VALUES ($1, $2, $3, $4, $5)', [
      order.id,
      order.itemId,
      order.quantity,
      order.reservationId,
      order.createdAt,
    ])
  }

  async get(id: string): Promise<Order | undefined> {
    const result = await this.#pool.query<{ id: string; item_id: string; quantity: number; reservation_id: string; created_at: string }>(
      'SELECT id, item_id, quantity, reservation_id, created_at FROM orders WHERE id = $1',
      [id],
    )
    const row = result.rows[0]
    return row === undefined
      ? undefined
      : { id: row.id, itemId: row.item_id, quantity: row.quantity, reservationId: row.reservation_id, createdAt: Number(row.created_at) }
  }

  async count(): Promise<number> {
    const result = await this.#pool.query<{ n: string }>('SELECT count(*) AS n FROM orders')
    return Number(result.rows[0]?.n ?? 0)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#pool.end()
  }
}

/**
 * Connects a pool to PostgreSQL and creates the table.
 *
 * @example
 * ```ts
 * const store = await openPostgresStore('postgresql://orders@127.0.0.1:5432/orders')
 * ```
 */
export async function openPostgresStore(connectionString: string): Promise<OrderStore> {
  const pool = new pg.Pool({ connectionString, max: 10, connectionTimeoutMillis: 5_000, idleTimeoutMillis: 10_000 })
  // An idle client losing its server must not crash the process: the next query reports it.
  pool.on('error', () => {})
  await pool.query(`CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    reservation_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
  )`)
  return new PostgresOrderStore(pool)
}
