import type { ScenarioResult } from './scenario.js'

const W = 960
const LEFT = 70
const RIGHT = 20
const BARS_TOP = 50
const BARS_H = 170
const P99_TOP = 250
const P99_H = 80
const STRIP_H = 14
const BREAKER_Y = 350
const DRAIN_Y = 372
const H = 450

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

const SERIES = [
  { key: 'fresh', label: '2xx fresh', color: '#3a9d5d' },
  { key: 'fallback', label: '2xx cached fallback', color: '#4c8bd6' },
  { key: 's503', label: '503 fail-fast', color: '#e8a33d' },
  { key: 's504', label: '504 deadline', color: '#c2413b' },
  { key: 'other', label: 'other error', color: '#222' },
] as const

const BREAKER_COLORS: Record<string, string> = { closed: '#3a9d5d', half_open: '#e8c93d', open: '#c2413b', disabled: '#999' }
const DRAIN_COLORS: Record<string, string> = { serving: '#3a9d5d', draining: '#e8c93d', closing: '#a0522d', stopped: '#999' }

/**
 * Renders the run as an SVG timeline: answers per second by kind (stacked),
 * the p99 latency, the breaker's state and the drain's state, with the phases
 * marked. Pure function of the run's data, so the README's picture is a real run.
 *
 * @example
 * ```ts
 * writeFileSync('timeline.svg', renderTimelineSvg(result))
 * ```
 */
export function renderTimelineSvg(result: ScenarioResult): string {
  const points = result.timeline
  const seconds = Math.max(1, ...points.map((p) => p.t))
  const x = (t: number) => LEFT + ((W - LEFT - RIGHT) * t) / seconds
  const bw = Math.max(1, (W - LEFT - RIGHT) / seconds - 1)
  const maxRps = Math.max(10, ...points.map((p) => p.stats.requests - p.stats.aborted))
  const maxP99 = Math.max(100, ...points.map((p) => Math.max(p.get.p99, p.post.p99)))
  const out: string[] = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="11">`,
    `<title>Timeline of the ballast demo: answers per second, p99 latency, breaker and drain state per phase</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${LEFT}" y="18" font-size="14" font-weight="600">ballast demo: orders service under load (${result.ok ? 'every expectation held' : 'some expectations FAILED'})</text>`,
  )
  // Phase bands.
  for (const [i, phase] of result.phases.entries()) {
    const x0 = x(phase.startedAt / 1000)
    const x1 = x(phase.endedAt / 1000)
    out.push(
      `<rect x="${x0.toFixed(1)}" y="${BARS_TOP - 16}" width="${(x1 - x0).toFixed(1)}" height="${DRAIN_Y + STRIP_H - BARS_TOP + 16}" fill="${i % 2 === 0 ? '#f4f6f8' : '#fff'}"/>`,
    )
    out.push(
      `<text x="${((x0 + x1) / 2).toFixed(1)}" y="${BARS_TOP - 4}" text-anchor="middle" font-weight="600">${escapeXml(phase.name)}${phase.checks.every((c) => c.ok) ? ' ✓' : ' ✗'}</text>`,
    )
  }
  // Stacked answers per second.
  for (const p of points) {
    const s = p.stats
    const values: Record<string, number> = {
      fresh: s.ok - s.fallbacks,
      fallback: s.fallbacks,
      s503: s.s503,
      s504: s.s504,
      other: s.s5xx + s.s4xx + s.errors,
    }
    let y = BARS_TOP + BARS_H
    for (const series of SERIES) {
      const h = (BARS_H * (values[series.key] ?? 0)) / maxRps
      if (h <= 0) continue
      y -= h
      out.push(
        `<rect x="${(x(p.t - 1) + 0.5).toFixed(1)}" y="${y.toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${series.color}"/>`,
      )
    }
  }
  out.push(`<text x="${LEFT - 8}" y="${BARS_TOP + 4}" text-anchor="end">${maxRps}/s</text>`)
  out.push(`<text x="${LEFT - 8}" y="${BARS_TOP + BARS_H}" text-anchor="end">0</text>`)
  out.push(`<text x="8" y="${BARS_TOP + BARS_H / 2}">answers</text>`)
  // p99 lines: GET /orders/:id (the route deadline's story) and POST /orders.
  const line = (pick: (p: (typeof points)[number]) => number) =>
    points
      .map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.t - 0.5).toFixed(1)},${(P99_TOP + P99_H - (P99_H * pick(p)) / maxP99).toFixed(1)}`)
      .join(' ')
  out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${P99_TOP + P99_H}" y2="${P99_TOP + P99_H}" stroke="#ccc"/>`)
  out.push(`<path d="${line((p) => p.post.p99)}" fill="none" stroke="#b39ddb" stroke-width="1.5" stroke-dasharray="4 3"/>`)
  out.push(`<path d="${line((p) => p.get.p99)}" fill="none" stroke="#7a3fb0" stroke-width="1.5"/>`)
  out.push(`<text x="${LEFT - 8}" y="${P99_TOP + 4}" text-anchor="end">${maxP99.toFixed(0)} ms</text>`)
  out.push(`<text x="${LEFT - 8}" y="${P99_TOP + P99_H}" text-anchor="end">0</text>`)
  out.push(`<text x="8" y="${P99_TOP + P99_H / 2}">p99</text>`)
  // State strips.
  for (const [label, y, colors, pick] of [
    ['breaker', BREAKER_Y, BREAKER_COLORS, (p: (typeof points)[number]) => p.service.breaker],
    ['drain', DRAIN_Y, DRAIN_COLORS, (p: (typeof points)[number]) => (p.service.reachable ? p.service.drainState : 'stopped')],
  ] as const) {
    out.push(`<text x="8" y="${y + 11}">${label}</text>`)
    for (const p of points) {
      const state = pick(p)
      out.push(
        `<rect x="${x(p.t - 1).toFixed(1)}" y="${y}" width="${(bw + 1).toFixed(1)}" height="${STRIP_H}" fill="${colors[state] ?? '#ddd'}"><title>${escapeXml(`${p.t}s ${label} ${state}`)}</title></rect>`,
      )
    }
  }
  // Time axis and legend.
  for (let t = 0; t <= seconds; t += 10)
    out.push(`<text x="${x(t).toFixed(1)}" y="${DRAIN_Y + STRIP_H + 14}" text-anchor="middle" fill="#666">${t}s</text>`)
  // Two legend rows: what the bars and the line show, then what the strips' colours mean.
  const rows = [
    [...SERIES.map((s) => [s.label, s.color] as const), ['GET p99', '#7a3fb0'] as const, ['POST p99 (dashed)', '#b39ddb'] as const],
    [
      ['breaker closed / drain serving', '#3a9d5d'] as const,
      ['half-open / draining', '#e8c93d'] as const,
      ['breaker open', '#c2413b'] as const,
      ['drain closing', DRAIN_COLORS.closing as string] as const,
    ],
  ]
  for (const [row, entries] of rows.entries()) {
    let lx = LEFT
    const y = H - 34 + row * 16
    for (const [label, fill] of entries) {
      out.push(
        `<rect x="${lx}" y="${y}" width="10" height="10" fill="${fill}"/><text x="${lx + 14}" y="${y + 9}">${escapeXml(label)}</text>`,
      )
      lx += 26 + label.length * 6
    }
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}
