import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { propertyKey } from './property-key.js'

const MODULE = fileURLToPath(new URL('./property-key.ts', import.meta.url))

/**
 * How V8 itself prints each string (`%DebugPrint`, short form): `#name` for an
 * internalized string, `"name"` for any other. Run in a child process, where
 * natives syntax can be switched on.
 */
function v8Forms(): string {
  // Natives syntax inside a Function body: Node 22.12 strips types from the -e script itself, and % is no TypeScript.
  const script = `
    const { propertyKey } = await import(${JSON.stringify(MODULE)});
    const debugPrint = new Function('value', '%DebugPrint(value)');
    const built = 'X-Budget-' + 'Ms'.repeat(1);
    debugPrint(built.toLowerCase());
    debugPrint(propertyKey(built.toLowerCase()));
    debugPrint(propertyKey(String(0.025)));
  `
  const result = spawnSync(
    process.execPath,
    ['--allow-natives-syntax', '--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 10_000 },
  )
  expect(result.status).toBe(0)
  return result.stdout
}

describe('propertyKey', () => {
  it('returns the same content', () => {
    for (const key of ['request-timeout-ms', 'route:/a,source:default,', '0.025', '10', '', 'ü']) {
      expect(propertyKey(key.slice(0))).toBe(key)
    }
  })

  it('returns the internalized copy of a string built at run time', () => {
    const printed = v8Forms()
    // The built string is not internalized: the check below would fail without propertyKey.
    expect(printed).toContain(': "x-budget-ms"')
    expect(printed).toContain(': #x-budget-ms')
    expect(printed).toContain(': #0.025')
  })
})
