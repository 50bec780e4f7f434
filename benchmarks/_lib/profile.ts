// Summarises a V8 .cpuprofile (from `node --cpu-prof`) into the functions with the
// most self time and the share of time per area (a @ballast package, express,
// prom-client, Node internals, GC), which is what RESULTS.md shows where a
// target is missed.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}
interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

export interface ProfileSummary {
  readonly file: string
  readonly totalMs: number
  /** Share of non-idle time, by function, highest first. */
  readonly functions: { name: string; where: string; area: string; selfMs: number; share: number }[]
  readonly areas: { area: string; selfMs: number; share: number }[]
}

export function areaOf(url: string, name: string): string {
  if (name === '(garbage collector)') return 'GC'
  if (name === '(program)' || name === '(root)') return 'V8 / native'
  const pkg = /\/packages\/(core|deadline|breaker|drain|fetch)\//.exec(url)
  if (pkg !== null) return `@ballast/${pkg[1]}`
  const module = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (module !== null) return module[1] as string
  if (url.startsWith('node:') || url === '') return 'Node core'
  return 'benchmark app'
}

function shortWhere(url: string, line: number): string {
  if (url === '') return ''
  const trimmed = url
    .replace(/^file:\/\//, '')
    .replace(/^.*\/node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?/, '')
    .replace(/^.*\/packages\//, 'packages/')
    .replace(/^.*\/benchmarks\//, 'benchmarks/')
  return `${trimmed}:${line + 1}`
}

export function summarizeProfile(file: string, top = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  const functions = new Map<string, { name: string; where: string; area: string; selfMs: number }>()
  const areas = new Map<string, number>()
  let total = 0
  for (const [id, micros] of self) {
    const frame = byId.get(id)?.callFrame
    // The inspector session runs on the profiled thread; its own frames are the measurement, not the app.
    if (frame === undefined || frame.functionName === '(idle)' || frame.url === 'node:inspector') continue
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
    const where = shortWhere(frame.url, frame.lineNumber)
    const area = areaOf(frame.url, name)
    const key = `${name}@${where}`
    const entry = functions.get(key) ?? { name, where, area, selfMs: 0 }
    entry.selfMs += micros / 1000
    functions.set(key, entry)
    areas.set(area, (areas.get(area) ?? 0) + micros / 1000)
    total += micros / 1000
  }
  return {
    file,
    totalMs: total,
    functions: [...functions.values()]
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, top)
      .map((entry) => ({ ...entry, share: entry.selfMs / total })),
    areas: [...areas].map(([area, selfMs]) => ({ area, selfMs, share: selfMs / total })).sort((a, b) => b.selfMs - a.selfMs),
  }
}

/** The newest .cpuprofile in `dir`. */
export function newestProfile(dir: string): string | undefined {
  const files = readdirSync(dir)
    .filter((file) => file.endsWith('.cpuprofile'))
    .sort()
  const last = files.at(-1)
  return last === undefined ? undefined : join(dir, last)
}

export function profileMarkdown(summary: ProfileSummary, areasShown = 8): string {
  const areaText = summary.areas
    .slice(0, areasShown)
    .map((a) => `${a.area} ${(a.share * 100).toFixed(1)} %`)
    .join(', ')
  const rows = summary.functions.map(
    (f) => `| ${(f.share * 100).toFixed(1)} % | \`${f.name}\` | ${f.area} | ${f.where === '' ? '—' : `\`${f.where}\``} |`,
  )
  return [
    `Self time by area (non-idle ${summary.totalMs.toFixed(0)} ms): ${areaText}.`,
    '',
    '| self | function | area | where |',
    '|---:|---|---|---|',
    ...rows,
  ].join('\n')
}
