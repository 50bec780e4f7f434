import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const here = fileURLToPath(new URL('./consumer/', import.meta.url))
const expected = { instance: true, status: 503, prefix: 'ballast_', route: '<unmatched>' }

// process.execPath is the Node running the suite: CI runs it on Node 24 and again on Node 22.
describe(`consumers on Node ${process.version}`, () => {
  it('a CommonJS application can require() the package', async () => {
    const { stdout, stderr } = await run(process.execPath, ['require.cjs'], { cwd: here })
    expect(JSON.parse(stdout)).toEqual(expected)
    expect(stderr).not.toMatch(/Error/)
  })

  it('an ES module application can import the package', async () => {
    const { stdout } = await run(process.execPath, ['import.mjs'], { cwd: here })
    expect(JSON.parse(stdout)).toEqual(expected)
  })

  it('a TypeScript consumer type-checks against the built declarations', async () => {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
    const result = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: here }).catch((error: { stdout: string }) => error)
    expect(result.stdout).toBe('')
  })
})
