import { cpSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { Deadline, withDeadline } from './deadline.js'

// A second installed copy of this package, as a duplicate in node_modules would be: the same
// code as another module instance, resolving @ballast/core from the package's own node_modules.
const copyDir = fileURLToPath(new URL('../node_modules/.second-copy/', import.meta.url))
cpSync(fileURLToPath(new URL('../dist/', import.meta.url)), copyDir, { recursive: true })
afterAll(() => rmSync(copyDir, { recursive: true, force: true }))

describe('two copies of the package', () => {
  it('withDeadline of one copy runs under a deadline made current by another copy', async () => {
    const other = (await import(/* @vite-ignore */ `${copyDir}index.js`)) as { Deadline: typeof Deadline }
    const outer = other.Deadline.after(1_000)
    // The README: the store is shared "so a deadline set by one copy is current() for the others".
    const result = await outer.run(async () => {
      expect(Deadline.current()).toBe(outer)
      return withDeadline(100, async () => 'done')
    })
    expect(result).toBe('done')
    outer[Symbol.dispose]()
  })
})
