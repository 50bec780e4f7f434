// `pnpm start`: the orders service alone, configured by environment variables
// (see config.ts and the README). SIGTERM/SIGINT drain it and node exits 0; pnpm
// itself, forwarding the signal, exits 143, so under a supervisor run
// `node dist/main.js` directly for the drain's exit code to reach it.
import { loadOrdersConfig } from './config.js'
import { createLogger } from './logger.js'
import { openOrderStore } from './order-store.js'
import { createOrdersService } from './orders-service.js'

async function main(): Promise<void> {
  const config = loadOrdersConfig(process.env)
  const logger = createLogger(config.logLevel, 'orders')
  const store = await openOrderStore(config)
  await createOrdersService({ config, store, logger }).listen()
}

main().catch((error: unknown) => {
  // Before the logger exists or while it may not flush: plain stderr, then a non-zero exit.
  console.error(`orders service failed to start: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
})
