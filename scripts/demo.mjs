// The demo entry point (`make demo` / `pnpm demo`). The orders-service demo of
// examples/orders-service runs here once it exists; until then this says so
// plainly and lists what is built, rather than pretending.

import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const demo = join(root, 'examples', 'orders-service', 'scripts', 'demo.mjs')
if (existsSync(demo)) {
  const result = spawnSync(process.execPath, [demo, ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(result.status ?? 1)
}

const packages = readdirSync(join(root, 'packages')).filter((name) => existsSync(join(root, 'packages', name, 'dist', 'index.js')))
console.log('ballast demo')
console.log(`built packages: ${packages.map((name) => `@ballast/${name}`).join(', ')}`)
console.log('The orders-service scenario (healthy -> slow -> failing -> recovery -> SIGTERM) is not built yet;')
console.log('see the open issue "Orders example service, the demo, ...". Nothing else is simulated here.')
