// Runs every benchmark in benchmarks/ one after the other (never in parallel:
// they measure throughput on a shared 2-core machine). Each benchmark is bounded
// in time and requests and prints its own report; this runner only sequences
// them and fails if one fails. `pnpm bench <name-fragment>` runs a subset.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

const dir = join(import.meta.dirname, '..', 'benchmarks')
const filter = process.argv[2] ?? ''
const files = readdirSync(dir)
  .filter((file) => /\.(ts|mjs)$/.test(file) && !file.startsWith('_') && file.includes(filter))
  .sort()

if (files.length === 0) {
  console.error(`bench: no benchmark in ${dir} matches "${filter}"`)
  process.exit(1)
}
let failed = 0
for (const file of files) {
  console.log(`\n### ${file} (node ${process.version})`)
  const result = spawnSync(process.execPath, ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--expose-gc', file], {
    cwd: dir,
    stdio: 'inherit',
  })
  if (result.status !== 0) {
    failed++
    console.error(`bench: ${file} exited with ${result.status ?? result.signal}`)
  }
}
process.exit(failed === 0 ? 0 : 1)
