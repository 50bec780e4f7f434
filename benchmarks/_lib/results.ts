// Where benchmark results go: one JSON file per benchmark in benchmarks/results/
// (or $BALLAST_BENCH_RESULTS), read back by _report.ts to write RESULTS.md and the
// charts. Each benchmark also prints its tables, so it is useful run on its own.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const RESULTS_DIR = process.env.BALLAST_BENCH_RESULTS ?? join(import.meta.dirname, '..', 'results')

export function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, `${name}.json`)
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`)
  return file
}

export function readResult<T>(name: string): T | undefined {
  try {
    return JSON.parse(readFileSync(join(RESULTS_DIR, `${name}.json`), 'utf8')) as T
  } catch {
    return undefined
  }
}

/** `QUICK=1` shrinks every loop (for checking the scripts, never for numbers). */
export const QUICK = process.env.BALLAST_BENCH_QUICK === '1'
