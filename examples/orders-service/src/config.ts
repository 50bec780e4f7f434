import { numberOption, stringOption } from '@ballast/core'

const OWNER = 'orders-service config'

/** Everything the orders service reads from its environment, validated. */
export interface OrdersConfig {
  /** `HOST`: interface to listen on. Default `127.0.0.1` (`0.0.0.0` in a container). */
  readonly host: string
  /** `PORT`: the API port; `0` picks a free one. Default `8080`. */
  readonly port: number
  /** `METRICS_PORT`: the `/metrics` port, closed last on shutdown. Default `9464`. */
  readonly metricsPort: number
  /** `INVENTORY_URL`: base URL of the inventory service. Default `http://127.0.0.1:8081`. */
  readonly inventoryUrl: string
  /** `DATABASE_URL`: PostgreSQL connection string; unset means the embedded SQLite store. */
  readonly databaseUrl: string | undefined
  /** `SQLITE_PATH`: file of the embedded store. Default `orders.db`. */
  readonly sqlitePath: string
  /** `REQUEST_TIMEOUT_MS`: app-wide deadline of every request. Default `2000`. */
  readonly requestTimeout: number
  /** `ORDER_TIMEOUT_MS`: deadline of `GET /orders/:id`, shrinks the app-wide one. Default `500`. */
  readonly orderTimeout: number
  /** `INVENTORY_TIMEOUT_MS`: per-attempt budget of inventory calls. Default `800`. */
  readonly inventoryTimeout: number
  /** `RESERVATION_TIMEOUT_MS`: budget of the (never retried) reservation call of `POST /orders`. Default `1500`. */
  readonly reservationTimeout: number
  /** `BREAKER_VOLUME_THRESHOLD`: calls in the window before the breaker may open. Default `20`. */
  readonly breakerVolumeThreshold: number
  /** `BREAKER_ERROR_THRESHOLD_PERCENTAGE`: it opens once more than this percentage of the calls failed. Default `50`. */
  readonly breakerErrorThresholdPercentage: number
  /** `BREAKER_RESET_TIMEOUT_MS`: open → half-open. Default `5000`. */
  readonly breakerResetTimeout: number
  /** `DRAIN_GRACE_PERIOD_MS`: hard limit from SIGTERM to exit. Default `25000`. */
  readonly drainGracePeriod: number
  /** `DRAIN_READINESS_DELAY_MS`: serve with /readyz at 503 this long before closing. Default: the drain's (5 s on Kubernetes, else 0). */
  readonly drainReadinessDelay: number | undefined
  /** `LOG_LEVEL`: pino level. Default `info`. */
  readonly logLevel: string
}

/** The inventory service's settings (`INVENTORY_PORT`, `INVENTORY_METRICS_PORT`, `HOST`, `LOG_LEVEL`). */
export interface InventoryConfig {
  readonly host: string
  readonly port: number
  readonly metricsPort: number
  readonly logLevel: string
}

const LOG_LEVELS = /^(?:fatal|error|warn|info|debug|trace|silent)$/
const HOST = /^[A-Za-z0-9.:[\]-]+$/
type Env = Readonly<Record<string, string | undefined>>

/** An environment variable as a number, or undefined when unset or empty; a non-number is kept as text so the option check quotes it. */
function numeric(env: Env, name: string): unknown {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return undefined
  const value = Number(raw)
  return Number.isNaN(value) ? raw : value
}

function text(env: Env, name: string): string | undefined {
  const raw = env[name]
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim()
}

function port(env: Env, name: string, fallback: number): number {
  return numberOption(OWNER, name, numeric(env, name), fallback, { min: 0, max: 65_535, integer: true })
}

function ms(env: Env, name: string, fallback: number, max = 600_000): number {
  return numberOption(OWNER, name, numeric(env, name), fallback, { min: 1, max, integer: true })
}

function url(env: Env, name: string, fallback: string): string {
  const value = stringOption(OWNER, name, text(env, name), fallback)
  if (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol)) {
    throw new RangeError(`${OWNER}: option "${name}" must be an http(s) URL, got '${value}'`)
  }
  return value
}

/**
 * Reads and validates the orders service's environment. A bad value throws a
 * `TypeError`/`RangeError` naming the variable and quoting the value, so a
 * misconfigured pod fails at start rather than under load.
 *
 * @example
 * ```ts
 * const config = loadOrdersConfig(process.env)
 * ```
 */
export function loadOrdersConfig(env: Env): OrdersConfig {
  const databaseUrl = text(env, 'DATABASE_URL')
  if (databaseUrl !== undefined && !/^postgres(?:ql)?:\/\//.test(databaseUrl)) {
    // The URL carries a password: never quote it.
    throw new RangeError(`${OWNER}: option "DATABASE_URL" must be a postgres:// or postgresql:// URL`)
  }
  const requestTimeout = ms(env, 'REQUEST_TIMEOUT_MS', 2_000)
  const orderTimeout = ms(env, 'ORDER_TIMEOUT_MS', 500)
  const drainGracePeriod = ms(env, 'DRAIN_GRACE_PERIOD_MS', 25_000, 2 ** 31 - 1)
  const drainReadinessDelay = numberOption(OWNER, 'DRAIN_READINESS_DELAY_MS', numeric(env, 'DRAIN_READINESS_DELAY_MS'), undefined, {
    min: 0,
    max: drainGracePeriod - 1,
    integer: true,
  })
  return {
    host: stringOption(OWNER, 'HOST', text(env, 'HOST'), '127.0.0.1', HOST),
    port: port(env, 'PORT', 8080),
    metricsPort: port(env, 'METRICS_PORT', 9464),
    inventoryUrl: url(env, 'INVENTORY_URL', 'http://127.0.0.1:8081'),
    databaseUrl,
    sqlitePath: stringOption(OWNER, 'SQLITE_PATH', text(env, 'SQLITE_PATH'), 'orders.db'),
    requestTimeout,
    orderTimeout,
    inventoryTimeout: ms(env, 'INVENTORY_TIMEOUT_MS', 800),
    reservationTimeout: ms(env, 'RESERVATION_TIMEOUT_MS', 1_500),
    breakerVolumeThreshold: numberOption(OWNER, 'BREAKER_VOLUME_THRESHOLD', numeric(env, 'BREAKER_VOLUME_THRESHOLD'), 20, {
      min: 1,
      max: 100_000,
      integer: true,
    }),
    breakerErrorThresholdPercentage: numberOption(
      OWNER,
      'BREAKER_ERROR_THRESHOLD_PERCENTAGE',
      numeric(env, 'BREAKER_ERROR_THRESHOLD_PERCENTAGE'),
      50,
      { min: 1, max: 100 },
    ),
    breakerResetTimeout: ms(env, 'BREAKER_RESET_TIMEOUT_MS', 5_000),
    drainGracePeriod,
    drainReadinessDelay,
    logLevel: stringOption(OWNER, 'LOG_LEVEL', text(env, 'LOG_LEVEL'), 'info', LOG_LEVELS),
  }
}

/**
 * Reads and validates the inventory service's environment.
 *
 * @example
 * ```ts
 * const config = loadInventoryConfig(process.env)
 * ```
 */
export function loadInventoryConfig(env: Env): InventoryConfig {
  return {
    host: stringOption(OWNER, 'HOST', text(env, 'HOST'), '127.0.0.1', HOST),
    port: port(env, 'INVENTORY_PORT', 8081),
    metricsPort: port(env, 'INVENTORY_METRICS_PORT', 9465),
    logLevel: stringOption(OWNER, 'LOG_LEVEL', text(env, 'LOG_LEVEL'), 'info', LOG_LEVELS),
  }
}
