import { getEventListeners } from 'node:events'
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

  it("withDeadline(ms, work, { signal }) under another copy's deadline whose child() takes no signal (an older copy)", async () => {
    const other = (await import(/* @vite-ignore */ `${copyDir}index.js`)) as { Deadline: typeof Deadline }
    const outer = other.Deadline.after(1_000)
    const child = outer.child.bind(outer)
    outer.child = (ms: number, options?: object) => {
      if (options !== undefined) throw new TypeError('Deadline.child: unknown option "signal"')
      return child(ms)
    }
    const job = new AbortController()
    const stop = new Error('job stopped')
    const pending = outer.run(() => withDeadline(500, () => new Promise<never>(() => {}), { signal: job.signal }))
    job.abort(stop)
    await expect(pending).rejects.toMatchObject({ message: 'the signal the deadline follows was aborted', cause: stop })
    const quiet = new AbortController()
    await expect(outer.run(() => withDeadline(500, async () => 'done', { signal: quiet.signal }))).resolves.toBe('done')
    expect(getEventListeners(quiet.signal, 'abort')).toHaveLength(0)
    expect(outer.signal.aborted).toBe(false)
    outer[Symbol.dispose]()
  })
})
