// The demo (`pnpm demo` at the repository root, or `pnpm demo` here): builds the
// example if needed, then runs the scripted scenario of src/demo/scenario.ts
// against the real services. Exits non-zero when an expectation failed.
// Options: --out DIR --speed F --rate N --database-url URL --plain (see src/demo/run.ts).

import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const exampleDir = join(import.meta.dirname, '..')
const entry = join(exampleDir, 'dist', 'demo', 'run.js')
const buildInfo = join(exampleDir, 'dist', '.tsbuildinfo')

function newestSource(dir) {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs)
  }
  return newest
}

// `pnpm build` builds it when the root tsconfig references the example; otherwise build it here.
if (!existsSync(entry) || !existsSync(buildInfo) || newestSource(join(exampleDir, 'src')) > statSync(buildInfo).mtimeMs) {
  const tsc = createRequire(join(exampleDir, '..', '..', 'package.json')).resolve('typescript/bin/tsc')
  process.stdout.write('building examples/orders-service ...\n')
  const build = spawnSync(process.execPath, [tsc, '-b', exampleDir], { stdio: 'inherit' })
  if (build.status !== 0) process.exit(build.status ?? 1)
}

import(pathToFileURL(entry).href)
  .then(({ runDemo }) => runDemo(process.argv.slice(2)))
  .then(
    (code) => {
      process.exitCode = code
    },
    (error) => {
      console.error(error)
      process.exitCode = 1
    },
  )
