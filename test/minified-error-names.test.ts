import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { build } from 'esbuild'
import { afterAll, beforeAll, expect, test } from 'vitest'

/*
 * Services are often bundled and minified (esbuild, terser, swc), which renames
 * classes. An error's `name` is what logs show and what `instanceof` compares
 * between two copies of a package, so it must survive that: each package's
 * built entry point is bundled here as a user would, minified, and imported.
 */

const errorClasses = {
  core: ['BallastError'],
  deadline: ['ClientClosedError', 'DeadlineCancelledError', 'DeadlineExceededError'],
  breaker: ['BreakerTimeoutError', 'BrokenCircuitError'],
  fetch: ['FetchBudgetError', 'FetchInvalidJsonError', 'FetchNetworkError', 'FetchStatusError', 'FetchTimeoutError'],
  drain: ['DrainHookTimeoutError', 'DrainingError', 'GracePeriodExceededError'],
} as const

type ErrorClass = new (...args: never[]) => Error
type Exports = Record<string, unknown>

let dir: string
const minified: Record<string, Exports> = {}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ballast-minified-'))
  for (const pkg of Object.keys(errorClasses)) {
    const outfile = join(dir, `${pkg}.mjs`)
    await build({
      entryPoints: [new URL(`../packages/${pkg}/dist/index.js`, import.meta.url).pathname],
      outfile,
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'node',
      logLevel: 'silent',
    })
    minified[pkg] = (await import(pathToFileURL(outfile).href)) as Exports
  }
}, 60_000)

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

function errorsOf(exports: Exports): string[] {
  return Object.keys(exports)
    .filter((key) => typeof exports[key] === 'function' && (exports[key] as ErrorClass).prototype instanceof Error)
    .sort()
}

test.each(Object.entries(errorClasses))('the errors of @ballast/%s keep their names when minified', async (pkg, names) => {
  const original = (await import(`../packages/${pkg}/dist/index.js`)) as Exports
  const bundle = minified[pkg] as Exports
  expect(errorsOf(original)).toEqual(names)
  expect(errorsOf(bundle)).toEqual(names)
  for (const name of names) {
    const Minified = bundle[name] as ErrorClass
    const Original = original[name] as ErrorClass
    const error = Reflect.construct(Minified, ['x', name === 'BallastError' ? { code: 'BALLAST_X', status: 500 } : undefined])
    expect(Minified.name).toBe(name)
    expect(error.name).toBe(name)
    expect(String(error)).toMatch(new RegExp(`^${name}: `))
    // The minified copy and the original are two copies of the package in one process.
    expect(error).toBeInstanceOf(Original)
    expect(Reflect.construct(Original, ['x', { code: 'BALLAST_X', status: 500 }])).toBeInstanceOf(Minified)
  }
})
