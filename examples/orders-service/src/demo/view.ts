import { availableParallelism } from 'node:os'
import type { PhaseResult, ScenarioResult, TimelinePoint } from './scenario.js'

const ESC = '\u001b['
const color = (code: number, text: string, on: boolean) => (on ? `${ESC}${code}m${text}${ESC}0m` : text)
const pad = (text: string | number, width: number) => String(text).padStart(width)

/**
 * The demo's output. On a terminal: a live panel redrawn in place (phase with
 * a progress bar, req/s, p50/p99, status counts, breaker, fallbacks, deadline
 * expiries, in-flight). Elsewhere (CI, a pipe): one plain line per second.
 */
export class LiveView {
  readonly #tty: boolean
  readonly #write: (text: string) => void
  #panel: string[] = []
  #drawn = 0
  #progress = ''
  #last: TimelinePoint | undefined
  #prevFallbacks = 0
  #prevExpired = 0

  constructor(tty: boolean, write: (text: string) => void) {
    this.#tty = tty
    this.#write = write
  }

  phase(name: string, index: number, count: number, story: string): void {
    this.#flush(`${color(1, `▶ phase ${index + 1}/${count}: ${name}`, this.#tty)} — ${story}\n`)
  }

  progress(name: string, index: number, count: number, elapsed: number, total: number): void {
    if (!this.#tty) return
    const width = 30
    const done = Math.max(0, Math.min(width, Math.round((elapsed / total) * width)))
    this.#progress = `${color(1, `${index + 1}/${count} ${name.padEnd(8)}`, true)} [${'█'.repeat(done)}${'░'.repeat(width - done)}] ${elapsed.toFixed(1)}/${total.toFixed(0)} s`
    this.#redraw()
  }

  second(point: TimelinePoint, inflight: number): void {
    const s = point.stats
    const v = point.service
    const fallbacks = v.fallbacks - this.#prevFallbacks
    const expired = v.deadlineExceeded - this.#prevExpired
    this.#prevFallbacks = v.fallbacks
    this.#prevExpired = v.deadlineExceeded
    this.#last = point
    if (!this.#tty) {
      this.#write(
        `[${pad(point.t, 3)}s] ${point.phase.padEnd(8)} req/s=${pad(s.requests, 4)} p50=${pad(s.p50.toFixed(0), 4)}ms p99=${pad(s.p99.toFixed(0), 4)}ms ` +
          `2xx=${s.ok} fallback=${s.fallbacks} 503=${s.s503} 504=${s.s504} 5xx=${s.s5xx} 4xx=${s.s4xx} err=${s.errors} aborted=${s.aborted} ` +
          `breaker=${v.breaker} fallbacks+${fallbacks} expired+${expired} inflight=${inflight} drain=${v.drainState}\n`,
      )
      return
    }
    const breakerColor = v.breaker === 'closed' ? 32 : v.breaker === 'open' ? 31 : 33
    this.#panel = [
      `  req/s ${pad(s.requests, 4)}   p50 ${pad(s.p50.toFixed(0), 4)} ms   p99 ${pad(s.p99.toFixed(0), 4)} ms   in-flight ${pad(inflight, 3)}`,
      `  2xx ${pad(s.ok, 4)} (fallback ${pad(s.fallbacks, 4)})   503 ${pad(s.s503, 3)}   504 ${pad(s.s504, 3)}   other 5xx ${pad(s.s5xx, 3)}   no answer ${pad(s.errors, 3)}   client gave up ${pad(s.aborted, 3)}`,
      `  breaker ${color(breakerColor, v.breaker.padEnd(9), true)}  fallbacks/s ${pad(fallbacks, 4)}   deadline expiries/s ${pad(expired, 4)}   drain ${v.drainState}`,
    ]
    this.#redraw()
  }

  phaseDone(phase: PhaseResult): void {
    for (const c of phase.checks) {
      this.#flush(`  ${c.ok ? color(32, '✓', this.#tty) : color(31, '✗', this.#tty)} ${c.label}: ${c.detail}\n`)
    }
  }

  summary(result: ScenarioResult, outDir: string): void {
    // The live panel goes away for good: the table replaces it.
    if (this.#tty) this.#clear()
    this.#panel = []
    this.#progress = ''
    this.#last = undefined
    const header = ['phase', 'requests', '2xx', 'fallback', '503', '504', 'other', 'p50 ms', 'p99 ms', 'checks']
    const rows = result.phases.map((p) => [
      p.name,
      String(p.all.requests),
      String(p.all.ok),
      String(p.all.fallbacks),
      String(p.all.s503),
      String(p.all.s504),
      String(p.all.s5xx + p.all.s4xx + p.all.errors),
      p.all.p50.toFixed(0),
      p.all.p99.toFixed(0),
      `${p.checks.filter((c) => c.ok).length}/${p.checks.length}${p.checks.every((c) => c.ok) ? '' : ' FAILED'}`,
    ])
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
    const line = (cells: string[]) =>
      cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('  ')
    const out = [
      '',
      'summary',
      line(header),
      widths.map((w) => '-'.repeat(w)).join('  '),
      ...rows.map(line),
      '',
      `machine: 1-min load up to ${result.maxLoad.toFixed(1)} on ${availableParallelism()} cores, load generator event-loop delay p99 ${result.loopDelayP99.toFixed(0)} ms`,
      `orders written: ${result.rows} rows in the store, ${result.created} answered 201 · orders service exit code ${result.exitCode}`,
      `timeline: ${outDir}/timeline.svg · data: ${outDir}/timeline.json · logs: ${outDir}/*.log`,
      result.ok ? color(32, 'demo passed: every expectation held', this.#tty) : color(31, 'demo FAILED: see the ✗ lines above', this.#tty),
      '',
    ]
    this.#write(`${out.join('\n')}\n`)
  }

  /** Prints a permanent line above the live panel. */
  #flush(text: string): void {
    if (this.#tty) this.#clear()
    this.#write(text)
    if (this.#tty) this.#redraw()
  }

  #clear(): void {
    if (this.#drawn > 0) this.#write(`${ESC}${this.#drawn}F${ESC}0J`)
    this.#drawn = 0
  }

  #redraw(): void {
    if (!this.#tty) return
    this.#clear()
    const lines = [this.#progress, ...this.#panel].filter((l) => l !== '')
    if (lines.length === 0 || this.#last === undefined) {
      if (this.#progress !== '') {
        this.#write(`${this.#progress}\n`)
        this.#drawn = 1
      }
      return
    }
    this.#write(`${lines.join('\n')}\n`)
    this.#drawn = lines.length
  }
}
