import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export const EXAMPLES = join(import.meta.dirname, '..', '..', '..')

interface DashboardPanel {
  title?: string
  type?: string
  targets?: { expr?: string }[]
  panels?: DashboardPanel[]
}

/** Every PromQL expression of the Grafana dashboard, with the panel it belongs to. */
export function dashboardExpressions(): { panel: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(join(EXAMPLES, 'grafana', 'ballast.json'), 'utf8')) as { panels: DashboardPanel[] }
  const out: { panel: string; expr: string }[] = []
  const visit = (panels: DashboardPanel[]) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) if (target.expr !== undefined) out.push({ panel: panel.title ?? '?', expr: target.expr })
      visit(panel.panels ?? [])
    }
  }
  visit(dashboard.panels)
  return out
}

/** Every alert of alerts.yml: name and expression (read with the `expr: |` block or one-line form). */
export function alertExpressions(): { alert: string; expr: string }[] {
  const lines = readFileSync(join(EXAMPLES, 'prometheus', 'alerts.yml'), 'utf8').split('\n')
  const out: { alert: string; expr: string }[] = []
  for (let i = 0; i < lines.length; i++) {
    const alert = /^\s*- alert:\s*(\S+)/.exec(lines[i] as string)
    if (alert === null) continue
    const exprLine = lines.slice(i + 1).findIndex((line) => /^\s*expr:/.test(line))
    const at = i + 1 + exprLine
    const inline = /^\s*expr:\s*(.*)$/.exec(lines[at] as string)?.[1] ?? ''
    if (inline !== '|' && inline !== '>-' && inline !== '') {
      out.push({ alert: alert[1] as string, expr: inline })
      continue
    }
    const indent = /^(\s*)/.exec(lines[at + 1] as string)?.[1]?.length ?? 0
    const body: string[] = []
    for (let j = at + 1; j < lines.length; j++) {
      const line = lines[j] as string
      if (line.trim() !== '' && (/^(\s*)/.exec(line)?.[1]?.length ?? 0) < indent) break
      body.push(line.trim())
    }
    out.push({ alert: alert[1] as string, expr: body.join(' ').trim() })
  }
  return out
}

/** Grafana's variables replaced the way Grafana would for "All" and a 1 s scrape interval (`$__rate_interval`: 4 scrapes). */
export function substituteVariables(expr: string, rateInterval = '4s'): string {
  return expr.replaceAll('$__rate_interval', rateInterval).replaceAll('$job', '.+').replaceAll('$instance', '.+')
}

/**
 * An alert condition as a series-preserving expression: each comparison with a
 * number gets the `bool` modifier, so the query returns 0/1 for every series the
 * rule looks at instead of only the firing ones. Data back means every selector
 * and label of the rule matches real series.
 */
export function withBoolComparisons(expr: string): string {
  return expr.replace(/\s(==|!=|>=|<=|>|<)\s+(?=-?[0-9.])/g, ' $1 bool ')
}

/** The `ballast_*` metric names an expression references. */
export function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\bballast_[a-z0-9_]+/g) ?? [])]
}
