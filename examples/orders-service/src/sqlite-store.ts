import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { Order, OrderStore } from './order-store.js'

type SqliteModule = typeof import('node:sqlite')

/**
 * Loads `node:sqlite` without its one-time ExperimentalWarning on stderr: the
 * module is stable enough for an embedded demo store, and the warning would read
 * like a fault in every log. Other warnings pass through untouched.
 */
async function loadSqlite(): Promise<SqliteModule> {
  const emitWarning = process.emitWarning
  process.emitWarning = function filtered(this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
    const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type
    const message = typeof warning === 'string' ? warning : warning.message
    if (type === 'ExperimentalWarning' && /SQLite/i.test(message)) return
    return (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest)
  } as typeof process.emitWarning
  try {
    return await import('node:sqlite')
  } catch (error) {
    throw new Error('the embedded store needs node:sqlite (Node.js >= 22.13); set DATABASE_URL to use PostgreSQL instead', { cause: error })
  } finally {
    process.emitWarning = emitWarning
  }
}

interface Row {
  id: string
  item_id: string
  quantity: number
  reservation_id: string
  created_at: number
}

class SqliteOrderStore implements OrderStore {
  readonly kind = 'sqlite'
  readonly #db: DatabaseSync
  readonly #insert: StatementSync
  readonly #get: StatementSync
  readonly #count: StatementSync

  constructor(db: DatabaseSync) {
    this.#db = db
    this.#insert = db.prepare('INSERT INTO orders (id, item_id, quantity, reservation_id, created_at) VALUES (?, ?, ?, ?, ?)')
    this.#get = db.prepare('SELECT id, item_id, quantity, reservation_id, created_at FROM orders WHERE id = ?')
    this.#count = db.prepare('SELECT count(*) AS n FROM orders')
  }

  async insert(order: Order): Promise<void> {
    this.#insert.run(order.id, order.itemId, order.quantity, order.reservationId, order.createdAt)
  }

  async get(id: string): Promise<Order | undefined> {
    const row = this.#get.get(id) as Row | undefined
    return row === undefined
      ? undefined
      : { id: row.id, itemId: row.item_id, quantity: row.quantity, reservationId: row.reservation_id, createdAt: row.created_at }
  }

  async count(): Promise<number> {
    return Number((this.#count.get() as { n: number }).n)
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close()
  }
}

/**
 * Opens (or creates) the SQLite file in WAL mode, so another process (the demo
 * counting rows) can read it while the service writes.
 *
 * @example
 * ```ts
 * const store = await openSqliteStore('orders.db')
 * ```
 */
export async function openSqliteStore(path: string): Promise<OrderStore> {
  const { DatabaseSync } = await loadSqlite()
  const db = new DatabaseSync(path)
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 2000;')
  db.exec(`CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    reservation_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
  )`)
  return new SqliteOrderStore(db)
}
