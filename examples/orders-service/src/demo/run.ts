import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { runScenario } from './scenario.js'

/**
 * The demo's command line: `node scripts/demo.mjs [--out DIR] [--speed 0.6]
 * [--rate 120] [--database-url URL] [--orders-port N] [--metrics-port N]
 * [--inventory-port N] [--inventory-metrics-port N] [--plain]`. Resolves with
 * the exit code: 0 when every phase's expectation held.
 *
 * @example
 * ```ts
 * process.exitCode = await runDemo(process.argv.slice(2))
 * ```
 */
export async function runDemo(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      out: { type: 'string' },
      speed: { type: 'string' },
      rate: { type: 'string' },
      'database-url': { type: 'string' },
      'orders-port': { type: 'string' },
      'metrics-port': { type: 'string' },
      'inventory-port': { type: 'string' },
      'inventory-metrics-port': { type: 'string' },
      plain: { type: 'boolean' },
    },
  })
  const number = (name: string, value: string | undefined, min: number, max: number): number | undefined => {
    if (value === undefined) return undefined
    const parsed = Number(value)
    if (!Number.isFinite(parsed) || parsed < min || parsed > max)
      throw new RangeError(`demo: --${name} must be a number in ${min}..${max}, got '${value}'`)
    return parsed
  }
  const ports: Record<string, number> = {}
  for (const [flag, key] of [
    ['orders-port', 'orders'],
    ['metrics-port', 'ordersMetrics'],
    ['inventory-port', 'inventory'],
    ['inventory-metrics-port', 'inventoryMetrics'],
  ] as const) {
    const port = number(flag, values[flag], 1, 65_535)
    if (port !== undefined) ports[key] = port
  }
  const root = join(import.meta.dirname, '..', '..')
  const speed = number('speed', values.speed, 0.2, 10)
  const rate = number('rate', values.rate, 1, 2_000)
  const databaseUrl = values['database-url'] ?? process.env.DEMO_DATABASE_URL
  const result = await runScenario({
    distDir: join(root, 'dist'),
    outDir: values.out ?? join(root, '.runs', 'latest'),
    ports,
    ...(speed === undefined ? {} : { speed }),
    ...(rate === undefined ? {} : { rate }),
    ...(databaseUrl === undefined || databaseUrl === '' ? {} : { databaseUrl }),
    tty: values.plain !== true && process.stdout.isTTY === true,
  })
  return result.ok ? 0 : 1
}
