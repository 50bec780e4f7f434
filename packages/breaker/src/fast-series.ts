import type { Counter, Histogram } from 'prom-client'

// prom-client hashes the label object on every `inc`/`observe` (a sort, a join and
// a validation: most of a breaker call's cost). A breaker's label sets are fixed
// at construction, so these helpers find the series entry once and update it in
// place. The entry is re-checked on every call; when prom-client's storage is not
// what is expected (another version, `reset()`, `remove()`), the public API is
// used instead, so a value is never lost.

interface Entry {
  labels?: Record<string, string | number>
  value?: number
  sum?: number
  count?: number
  bucketValues?: Record<string, number>
}

interface Stored {
  hashMap?: Record<string, Entry>
  upperBounds?: readonly number[]
}

function sameLabels(a: Record<string, string | number> | undefined, b: Record<string, string>): boolean {
  if (a === undefined) return false
  const keys = Object.keys(b)
  return Object.keys(a).length === keys.length && keys.every((key) => String(a[key]) === b[key])
}

function locate(metric: Stored, labels: Record<string, string>): { key: string; entry: Entry } | undefined {
  const map = metric.hashMap
  if (typeof map !== 'object' || map === null) return undefined
  for (const key of Object.keys(map)) {
    const entry = map[key]
    if (typeof entry === 'object' && entry !== null && sameLabels(entry.labels, labels)) return { key, entry }
  }
  return undefined
}

/** One counter series, incremented by 1 without label hashing. */
export class FastCounter {
  readonly #metric: Counter<string>
  readonly #labels: Record<string, string>
  #key: string | undefined = undefined
  #entry: Entry | undefined = undefined

  constructor(metric: Counter<string>, labels: Record<string, string>) {
    this.#metric = metric
    this.#labels = labels
    this.#locate()
  }

  #locate(): void {
    this.#metric.inc(this.#labels, 0)
    const found = locate(this.#metric as unknown as Stored, this.#labels)
    const usable = found !== undefined && typeof found.entry.value === 'number'
    this.#key = usable ? found.key : undefined
    this.#entry = usable ? found.entry : undefined
  }

  inc(): void {
    const key = this.#key
    if (key !== undefined) {
      const entry = (this.#metric as unknown as Stored).hashMap?.[key]
      if (entry !== undefined && entry === this.#entry) {
        ;(entry.value as number) += 1
        return
      }
    }
    this.#metric.inc(this.#labels)
    this.#locate()
  }
}

/** One histogram series, observed without label hashing. */
export class FastHistogram {
  readonly #metric: Histogram<string>
  readonly #labels: Record<string, string>
  #key: string | undefined = undefined
  #entry: Entry | undefined = undefined
  #bounds: readonly number[] = []
  // prom-client keys buckets by the bound's string form; converting a double to
  // a string on every observation would cost more than the rest of it.
  #boundKeys: readonly string[] = []

  constructor(metric: Histogram<string>, labels: Record<string, string>) {
    this.#metric = metric
    this.#labels = labels
    this.#locate()
  }

  #locate(): void {
    this.#metric.zero(this.#labels)
    const stored = this.#metric as unknown as Stored
    const found = locate(stored, this.#labels)
    const bounds = stored.upperBounds
    const usable =
      found !== undefined &&
      Array.isArray(bounds) &&
      typeof found.entry.sum === 'number' &&
      typeof found.entry.count === 'number' &&
      typeof found.entry.bucketValues === 'object' &&
      bounds.every((bound) => typeof found.entry.bucketValues?.[bound] === 'number')
    this.#key = usable ? found.key : undefined
    this.#entry = usable ? found.entry : undefined
    this.#bounds = usable ? bounds : []
    this.#boundKeys = this.#bounds.map(String)
  }

  observe(value: number): void {
    const key = this.#key
    if (key !== undefined && Number.isFinite(value)) {
      const entry = (this.#metric as unknown as Stored).hashMap?.[key]
      if (entry !== undefined && entry === this.#entry) {
        ;(entry.sum as number) += value
        ;(entry.count as number) += 1
        const bounds = this.#bounds
        for (let i = 0; i < bounds.length; i++) {
          if (value <= (bounds[i] as number)) {
            const buckets = entry.bucketValues as Record<string, number>
            const bound = this.#boundKeys[i] as string
            buckets[bound] = (buckets[bound] as number) + 1
            break
          }
        }
        return
      }
    }
    this.#metric.observe(this.#labels, value)
    this.#locate()
  }
}
