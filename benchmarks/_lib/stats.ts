// Statistics and environment shared by every benchmark: medians with min–max over
// rounds, ratios against a baseline from the same round, and the run's context
// (Node version, CPU count, command) printed with every table.
import { cpus, loadavg, totalmem } from 'node:os'

/** Median of `values` (mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** Median and range of a sample, what every table cell reports. */
export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

export function summarize(values: readonly number[]): Summary {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), n: values.length }
}

/** `1.234 (1.100–1.300)` with `digits` decimals. */
export function formatSummary(summary: Summary, digits: number): string {
  return `${summary.median.toFixed(digits)} (${summary.min.toFixed(digits)}–${summary.max.toFixed(digits)})`
}

/** Where and how the numbers were taken, printed with every table. */
export interface RunContext {
  readonly node: string
  readonly v8: string
  readonly platform: string
  readonly cpus: number
  readonly cpuModel: string
  readonly memoryGiB: number
  readonly loadAverage: readonly number[]
  readonly command: string
  readonly startedAt: string
}

export function runContext(): RunContext {
  const list = cpus()
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: `${process.platform} ${process.arch}`,
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: loadavg().map((value) => Math.round(value * 100) / 100),
    command: ['node', ...process.execArgv, ...process.argv.slice(1).map((arg) => arg.replace(`${process.cwd()}/`, ''))].join(' '),
    startedAt: new Date().toISOString(),
  }
}

export function describeContext(context: RunContext): string {
  return `node ${context.node} (V8 ${context.v8}), ${context.platform}, ${context.cpus} CPUs (${context.cpuModel}), load average ${context.loadAverage.join(' ')}; command: ${context.command}`
}

/**
 * The order of `items` in round `round`: rotated by one each round (and reversed
 * every other round) so that no subject always runs first, or always right after
 * the same neighbour, while the machine drifts.
 */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  const rotated = items.map((_, i) => items[(i + round) % items.length] as T)
  return round % 2 === 1 ? rotated.reverse() : rotated
}

/** Markdown table from a header row and rows of cells. */
export function table(header: readonly string[], align: readonly ('l' | 'r')[], rows: readonly (readonly string[])[]): string {
  const rule = align.map((a) => (a === 'r' ? '---:' : '---'))
  return [header, rule, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

/** Bytes as MB with two decimals. */
export const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(2)
