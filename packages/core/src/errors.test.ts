import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import { BallastError, brandAsBallastError, isBallastError, matchesBallastClass } from './errors.js'

class QuotaError extends BallastError {
  constructor(cause?: unknown) {
    super('quota exceeded', { code: 'BALLAST_QUOTA', status: 429, headers: { 'retry-after': '3' }, cause })
  }
}

describe('BallastError', () => {
  it('carries name, code, status, headers and cause', () => {
    const cause = new Error('root')
    const error = new QuotaError(cause)
    expect(error).toBeInstanceOf(Error)
    expect(error).toBeInstanceOf(BallastError)
    expect(error).toBeInstanceOf(QuotaError)
    expect(error.name).toBe('QuotaError')
    expect(error.code).toBe('BALLAST_QUOTA')
    expect(error.status).toBe(429)
    expect(error.statusCode).toBe(429)
    expect(error.headers).toEqual({ 'retry-after': '3' })
    expect(error.cause).toBe(cause)
    expect(error.stack).toContain('QuotaError')
  })

  it('omits cause and headers when not given', () => {
    const error = new BallastError('plain', { code: 'BALLAST_X', status: 500 })
    expect('cause' in error).toBe(false)
    expect('headers' in error).toBe(false)
    expect(Object.keys(error)).toEqual(['code', 'status', 'statusCode', 'name'])
  })

  it('compares by shape in its types: another class with the same members is one (a second copy, a branded error)', () => {
    // Its brand lives on the prototype, out of the declared type: a `unique symbol` member
    // there would make the BallastError of every copy of this package a type of its own.
    class Branded extends Error {
      readonly code = 'BALLAST_BRANDED'
      readonly status = 504
      readonly statusCode = 504
    }
    brandAsBallastError(Branded.prototype)
    const asBallast: BallastError = new Branded('x')
    expect(isBallastError(asBallast)).toBe(true)
    expect(Object.getOwnPropertySymbols(new BallastError('y', { code: 'BALLAST_Y', status: 500 }))).toEqual([])
  })

  it('keeps identity across duplicate copies of the package', async () => {
    // A second copy of the built module in another folder, as a duplicated install would load it.
    const dir = await mkdtemp(join(tmpdir(), 'ballast-copy-'))
    const built = await readFile(new URL('../dist/errors.js', import.meta.url), 'utf8')
    await writeFile(join(dir, 'errors.js'), built.replace(/^\/\/# sourceMappingURL=.*$/m, ''))
    await writeFile(join(dir, 'package.json'), '{"type":"module"}')
    const copy = (await import(/* @vite-ignore */ pathToFileURL(join(dir, 'errors.js')).href)) as typeof import('./errors.js')
    await rm(dir, { recursive: true, force: true })
    expect(copy.BallastError).not.toBe(BallastError)
    const foreign = new copy.BallastError('x', { code: 'BALLAST_X', status: 500 })
    expect(foreign instanceof BallastError).toBe(true)
    expect(new QuotaError() instanceof copy.BallastError).toBe(true)
    expect(isBallastError(foreign)).toBe(true)

    class ForeignQuotaError extends copy.BallastError {}
    Object.defineProperty(ForeignQuotaError, 'name', { value: 'QuotaError' })
    expect(new ForeignQuotaError('q', { code: 'BALLAST_QUOTA', status: 429 }) instanceof QuotaError).toBe(true)
    expect(foreign instanceof QuotaError).toBe(false)
    // A user's subclass of the other copy's class, named (or minified) as it likes: its chain names the class.
    class SpecialQuotaError extends ForeignQuotaError {}
    const special = new SpecialQuotaError('q', { code: 'BALLAST_QUOTA', status: 429 })
    expect(special.name).toBe('SpecialQuotaError')
    expect(special instanceof QuotaError).toBe(true)
    expect(special instanceof BallastError).toBe(true)
  })

  it('does not claim unrelated values', () => {
    expect(isBallastError(new Error('x'))).toBe(false)
    expect(isBallastError(null)).toBe(false)
    expect(isBallastError({ code: 'BALLAST_X' })).toBe(false)
    expect(new Error('x') instanceof BallastError).toBe(false)
  })

  it('brands classes with a foreign base', () => {
    class Timeout extends Error {}
    class BrandedTimeout extends Timeout {
      static override [Symbol.hasInstance](value: unknown): boolean {
        return matchesBallastClass(BrandedTimeout, value)
      }
    }
    brandAsBallastError(BrandedTimeout.prototype)
    const error = new BrandedTimeout('late')
    expect(isBallastError(error)).toBe(true)
    expect(error instanceof BallastError).toBe(true)
    expect(error instanceof Timeout).toBe(true)
    expect(new Timeout('x') instanceof BrandedTimeout).toBe(false)
  })
})
