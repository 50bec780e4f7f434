import { describe, expect, it } from 'vitest'
import { loadInventoryConfig, loadOrdersConfig } from '../src/config.js'
import { HEALTHY, parseFaults } from '../src/faults.js'

describe('configuration from the environment', () => {
  it('has the documented defaults', () => {
    expect(loadOrdersConfig({})).toEqual({
      host: '127.0.0.1',
      port: 8080,
      metricsPort: 9464,
      inventoryUrl: 'http://127.0.0.1:8081',
      databaseUrl: undefined,
      sqlitePath: 'orders.db',
      requestTimeout: 2_000,
      orderTimeout: 500,
      inventoryTimeout: 800,
      reservationTimeout: 1_500,
      breakerVolumeThreshold: 20,
      breakerErrorThresholdPercentage: 50,
      breakerResetTimeout: 5_000,
      drainGracePeriod: 25_000,
      drainReadinessDelay: undefined,
      logLevel: 'info',
    })
    expect(loadInventoryConfig({})).toEqual({ host: '127.0.0.1', port: 8081, metricsPort: 9465, logLevel: 'info' })
  })

  it('reads every variable, empty meaning unset', () => {
    const config = loadOrdersConfig({
      HOST: '0.0.0.0',
      PORT: '0',
      METRICS_PORT: '9999',
      INVENTORY_URL: 'https://inventory.internal:8443/api',
      DATABASE_URL: 'postgresql://orders:secret@db:5432/orders',
      ORDER_TIMEOUT_MS: '250',
      DRAIN_READINESS_DELAY_MS: '0',
      LOG_LEVEL: 'warn',
      SQLITE_PATH: '',
    })
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 0,
      metricsPort: 9999,
      inventoryUrl: 'https://inventory.internal:8443/api',
      databaseUrl: 'postgresql://orders:secret@db:5432/orders',
      orderTimeout: 250,
      drainReadinessDelay: 0,
      logLevel: 'warn',
      sqlitePath: 'orders.db',
    })
  })

  it.each([
    [{ PORT: 'eighty' }, TypeError, /"PORT" must be an integer.*'eighty'/],
    [{ PORT: '70000' }, RangeError, /"PORT".*70000/],
    [{ ORDER_TIMEOUT_MS: '0' }, RangeError, /"ORDER_TIMEOUT_MS".*0/],
    [{ BREAKER_ERROR_THRESHOLD_PERCENTAGE: '150' }, RangeError, /"BREAKER_ERROR_THRESHOLD_PERCENTAGE".*150/],
    [{ INVENTORY_URL: 'ftp://x' }, RangeError, /"INVENTORY_URL".*'ftp:\/\/x'/],
    [{ LOG_LEVEL: 'loud' }, RangeError, /"LOG_LEVEL".*'loud'/],
    [{ DRAIN_GRACE_PERIOD_MS: '1000', DRAIN_READINESS_DELAY_MS: '5000' }, RangeError, /"DRAIN_READINESS_DELAY_MS".*5000/],
  ])('rejects %o at start with a message naming the variable and the value', (env, type, message) => {
    expect(() => loadOrdersConfig(env)).toThrow(type)
    expect(() => loadOrdersConfig(env)).toThrow(message)
  })

  it('never quotes a bad DATABASE_URL (it may hold a password)', () => {
    expect(() => loadOrdersConfig({ DATABASE_URL: 'mysql://u:hunter2@db/x' })).toThrow(/DATABASE_URL/)
    expect(() => loadOrdersConfig({ DATABASE_URL: 'mysql://u:hunter2@db/x' })).not.toThrow(/hunter2/)
  })
})

describe('inventory faults', () => {
  it('merges partial updates and validates each field', () => {
    const slow = parseFaults({ latencyMs: 700, jitterMs: 100 }, HEALTHY)
    expect(slow).toEqual({ latencyMs: 700, jitterMs: 100, errorRate: 0, hang: false })
    expect(parseFaults({ errorRate: 1 }, slow)).toEqual({ latencyMs: 700, jitterMs: 100, errorRate: 1, hang: false })
    expect(() => parseFaults({ errorRate: 1.5 }, HEALTHY)).toThrow(RangeError)
    expect(() => parseFaults({ hang: 1 }, HEALTHY)).toThrow(TypeError)
    expect(() => parseFaults({ latencyMs: -1 }, HEALTHY)).toThrow(/latencyMs/)
    expect(() => parseFaults({ speed: 1 }, HEALTHY)).toThrow(/unknown field "speed"/)
    expect(() => parseFaults([], HEALTHY)).toThrow(TypeError)
  })
})
