/**
 * `key` as an object's own property key is stored: V8's internalized copy (one
 * per content). Optimized code checks the name of a keyed access (`obj[key]`)
 * by identity, so a key built at run time (concatenation, `String(number)`,
 * `toLowerCase()`) fails that check on every call and can send the function into
 * a deoptimization loop. Hot paths that index objects with such keys take them
 * through this once, at setup.
 *
 * @example
 * ```ts
 * const header = propertyKey(options.header.toLowerCase())
 * // per request:
 * const raw = req.headers[header]
 * ```
 */
export function propertyKey(key: string): string {
  return Object.keys({ [key]: 0 })[0] as string
}
