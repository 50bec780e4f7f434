// `pnpm start:inventory`: the inventory service with controllable faults
// (`PUT /admin/faults`), the orders service's dependency in the demo.
import { loadInventoryConfig } from './config.js'
import { createInventoryService } from './inventory-service.js'
import { createLogger, flushLogger } from './logger.js'

async function main(): Promise<void> {
  const config = loadInventoryConfig(process.env)
  const logger = createLogger(config.logLevel, 'inventory')
  const service = createInventoryService({ logger, drain: { readinessDelay: 0 } })
  const ports = await service.listen(config.host, config.port, config.metricsPort)
  logger.info({ ...ports, host: config.host }, 'inventory service listening')
  service.drain.onShutdown('logger', () => flushLogger(logger), { timeout: 1_000 })
}

main().catch((error: unknown) => {
  console.error(`inventory service failed to start: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
})
