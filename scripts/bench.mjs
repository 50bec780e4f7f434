// Runs every benchmark in benchmarks/ one after the other (never in parallel:
// they measure throughput on a shared 2-core machine), then writes
// benchmarks/RESULTS.md and the SVG charts in benchmarks/results/ from what they
// produced. Each benchmark is bounded in time and requests and prints its own
// tables; this runner sequences them, keeps a copy of each one's output in
// benchmarks/results/logs/ (the per-package benchmarks are reported from it), and
// fails if one fails. `pnpm bench <name-fragment>` runs a subset and regenerates
// the report from the new results plus the previous ones (each section says when
// it was taken).
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'

const dir = join(import.meta.dirname, '..', 'benchmarks')
const results = join(dir, 'results')
const logs = join(results, 'logs')
const flags = ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--expose-gc']
const filter = process.argv[2] ?? ''
const files = readdirSync(dir)
  .filter((file) => /\.(ts|mjs)$/.test(file) && !file.startsWith('_') && file.includes(filter))
  .sort()

if (files.length === 0) {
  console.error(`bench: no benchmark in ${dir} matches "${filter}"`)
  process.exit(1)
}
mkdirSync(logs, { recursive: true })
const env = { ...process.env, BALLAST_BENCH_RESULTS: results }

/** Runs one benchmark, echoing its output and keeping a copy of its stdout. */
function run(file) {
  return new Promise((resolve) => {
    const started = performance.now()
    const child = spawn(process.execPath, [...flags, file], { cwd: dir, env, stdio: ['ignore', 'pipe', 'inherit'] })
    const chunks = []
    child.stdout.on('data', (chunk) => {
      chunks.push(chunk)
      process.stdout.write(chunk)
    })
    child.once('close', (code, signal) => {
      const seconds = (performance.now() - started) / 1000
      writeFileSync(join(logs, `${file}.log`), Buffer.concat(chunks))
      resolve({ file, status: code ?? signal, seconds, finishedAt: new Date().toISOString() })
    })
  })
}

const started = performance.now()
const runs = []
console.log(`bench: ${files.length} benchmarks, node ${process.version}, ${cpus().length} CPUs`)
for (const file of files) {
  console.log(`\n### ${file} (node ${process.version})`)
  const result = await run(file)
  runs.push(result)
  console.log(`bench: ${file} took ${result.seconds.toFixed(0)} s${result.status === 0 ? '' : `, exited with ${result.status}`}`)
}
const seconds = (performance.now() - started) / 1000
writeFileSync(
  join(results, filter === '' ? 'run.json' : 'run-partial.json'),
  `${JSON.stringify({ node: process.version, cpus: cpus().length, filter, seconds, runs }, null, 2)}\n`,
)
const report = spawnSync(process.execPath, [...flags, '_report.ts'], { cwd: dir, env, stdio: 'inherit' })
// The repository formats Markdown with Biome too: format the generated report so `pnpm lint` stays clean.
const biome = join(import.meta.dirname, '..', 'node_modules', '.bin', 'biome')
if (report.status === 0 && existsSync(biome)) {
  spawnSync(biome, ['format', '--write', join(dir, 'RESULTS.md')], { stdio: ['ignore', 'ignore', 'inherit'] })
}
const failed = runs.filter((r) => r.status !== 0)
console.log(
  `\nbench: ${runs.length} benchmarks in ${(seconds / 60).toFixed(1)} min; ${failed.length} failed; RESULTS.md ${report.status === 0 ? 'written' : 'FAILED'}`,
)
process.exit(failed.length === 0 && report.status === 0 ? 0 : 1)
