import vm from 'node:vm'
import { describe, expect, it } from 'vitest'
import { BallastError, isBallastError } from './errors.js'
import { methodLabel, OTHER_METHOD, routeLabel, UNMATCHED_ROUTE } from './route-label.js'

describe('(passing): labels and errors', () => {
  it('routeLabel/methodLabel odd inputs', () => {
    expect(routeLabel({ route: { path: /^\/u\/(\d+)$/ } })).toBe('/^\\/u\\/(\\d+)$/')
    expect(routeLabel({ baseUrl: '/api', route: { path: ['/a', '/b'] } })).toBe('/api/a|/b')
    expect(routeLabel({ route: { path: 5 } })).toBe('5')
    expect(routeLabel({ route: {} })).toBe(UNMATCHED_ROUTE)
    expect(methodLabel('get')).toBe('GET')
    expect(methodLabel('PROPFIND')).toBe(OTHER_METHOD)
    expect(methodLabel(undefined)).toBe(OTHER_METHOD)
  })
  it('isBallastError / instanceof across a vm realm', () => {
    const foreign = vm.runInNewContext(
      `class BallastError extends Error { get [Symbol.for('ballast.error')]() { return true } }; const e = new BallastError('m'); e.name = 'BallastError'; e`,
    )
    expect(isBallastError(foreign)).toBe(true)
    expect(foreign instanceof BallastError).toBe(true)
  })
})
