// A small hand-written SVG generator for RESULTS.md: horizontal bar charts with a
// min–max whisker per bar and optional reference lines (baseline, target). No
// dependencies; the output is plain SVG that GitHub renders inline.

export interface Bar {
  readonly label: string
  readonly value: number
  readonly min?: number
  readonly max?: number
  /** `ballast`, `baseline` or `peer`: picks the colour. */
  readonly kind?: 'ballast' | 'baseline' | 'peer'
  /** Text after the bar; defaults to the value with `digits` decimals. */
  readonly text?: string
}

export interface BarChart {
  readonly title: string
  readonly unit: string
  readonly bars: readonly Bar[]
  readonly digits?: number
  readonly lines?: readonly { value: number; label: string }[]
  /** Fixed end of the axis; by default the largest value or whisker, plus room. */
  readonly axisMax?: number
}

const COLORS = { ballast: '#2f6fde', baseline: '#8a8f98', peer: '#e08a2e' } as const
const escapeXml = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

export function barChart(chart: BarChart): string {
  const digits = chart.digits ?? 2
  const labelWidth = 300
  const plotWidth = 420
  const textWidth = 120
  const rowHeight = 26
  const top = 56
  const width = labelWidth + plotWidth + textWidth
  const height = top + chart.bars.length * rowHeight + 34
  const finite = (n: number | undefined): n is number => n !== undefined && Number.isFinite(n)
  const peak = Math.max(
    ...chart.bars.flatMap((bar) => [bar.value, bar.max].filter(finite)),
    ...(chart.lines ?? []).map((line) => line.value),
    Number.MIN_VALUE,
  )
  const axisMax = chart.axisMax ?? niceCeil(peak * 1.05)
  const x = (value: number): number => labelWidth + (Math.max(0, Math.min(value, axisMax)) / axisMax) * plotWidth
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="600" fill="#1f2328">${escapeXml(chart.title)}</text>`,
  ]
  chart.bars.forEach((bar, i) => {
    const y = top + i * rowHeight
    const color = COLORS[bar.kind ?? 'ballast']
    parts.push(`<text x="${labelWidth - 8}" y="${y + 16}" text-anchor="end" fill="#1f2328">${escapeXml(bar.label)}</text>`)
    if (finite(bar.value)) {
      parts.push(
        `<rect x="${labelWidth}" y="${y + 5}" width="${(x(bar.value) - labelWidth).toFixed(1)}" height="15" fill="${color}" rx="2"/>`,
      )
    }
    if (finite(bar.min) && finite(bar.max)) {
      const mid = y + 12.5
      parts.push(
        `<line x1="${x(bar.min).toFixed(1)}" y1="${mid}" x2="${x(bar.max).toFixed(1)}" y2="${mid}" stroke="#1f2328" stroke-width="1.2"/>`,
        `<line x1="${x(bar.min).toFixed(1)}" y1="${mid - 4}" x2="${x(bar.min).toFixed(1)}" y2="${mid + 4}" stroke="#1f2328" stroke-width="1.2"/>`,
        `<line x1="${x(bar.max).toFixed(1)}" y1="${mid - 4}" x2="${x(bar.max).toFixed(1)}" y2="${mid + 4}" stroke="#1f2328" stroke-width="1.2"/>`,
      )
    }
    const text = bar.text ?? (finite(bar.value) ? bar.value.toFixed(digits) : 'n/a')
    parts.push(`<text x="${labelWidth + plotWidth + 8}" y="${y + 16}" fill="#1f2328">${escapeXml(text)}</text>`)
  })
  const bottom = top + chart.bars.length * rowHeight
  // Labels of reference lines alternate between two heights so close lines stay readable.
  ;(chart.lines ?? []).forEach((line, i) => {
    const lx = x(line.value).toFixed(1)
    parts.push(
      `<line x1="${lx}" y1="${top - 6}" x2="${lx}" y2="${bottom}" stroke="#c0392b" stroke-width="1" stroke-dasharray="4 3"/>`,
      `<text x="${lx}" y="${top - (i % 2 === 0 ? 9 : 20)}" text-anchor="middle" font-size="10" fill="#c0392b">${escapeXml(line.label)}</text>`,
    )
  })
  parts.push(`<line x1="${labelWidth}" y1="${bottom + 2}" x2="${labelWidth + plotWidth}" y2="${bottom + 2}" stroke="#8a8f98"/>`)
  const step = niceStep(axisMax / 5)
  for (let value = 0; value <= axisMax * 1.0001; value += step) {
    const tx = x(value).toFixed(1)
    parts.push(
      `<line x1="${tx}" y1="${bottom + 2}" x2="${tx}" y2="${bottom + 6}" stroke="#8a8f98"/>`,
      `<text x="${tx}" y="${bottom + 18}" text-anchor="middle" font-size="10" fill="#57606a">${formatTick(value)}</text>`,
    )
  }
  parts.push(
    `<text x="${labelWidth + plotWidth}" y="${bottom + 30}" text-anchor="end" font-size="10" fill="#57606a">${escapeXml(chart.unit)}${chart.bars.some((bar) => finite(bar.min) && finite(bar.max)) ? '; bar = median, whisker = min–max over rounds' : ''}</text>`,
    '</svg>',
  )
  return `${parts.join('\n')}\n`
}

function niceStep(rough: number): number {
  const power = 10 ** Math.floor(Math.log10(rough))
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= rough) return step * power
  return 10 * power
}

function niceCeil(value: number): number {
  if (!(value > 0)) return 1
  const power = 10 ** Math.floor(Math.log10(value))
  for (const step of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (step * power >= value) return step * power
  return 10 * power
}

function formatTick(value: number): string {
  if (value >= 100) return value.toFixed(0)
  return String(Number(value.toFixed(2)))
}
