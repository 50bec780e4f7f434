// Reading the per-package benchmarks' output back: they print Markdown tables,
// which the report quotes and, for the headline numbers, parses.
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { RESULTS_DIR } from './results.ts'

export interface Log {
  readonly file: string
  readonly text: string
  readonly takenAt: string
}

/** The captured stdout of `benchmarks/<file>` from the last `pnpm bench`, if any. */
export function readLog(file: string): Log | undefined {
  const path = join(RESULTS_DIR, 'logs', `${file}.log`)
  try {
    return { file, text: readFileSync(path, 'utf8'), takenAt: statSync(path).mtime.toISOString() }
  } catch {
    return undefined
  }
}

/** The output without per-round progress lines, ready to quote in Markdown. */
export function quotable(text: string): string {
  return (
    text
      .split('\n')
      .filter((line) => !/^round \d+/.test(line) && !line.startsWith('{'))
      // A table needs a blank line before it when it follows a line of text.
      .map((line, i, lines) =>
        line.startsWith('|') && i > 0 && !(lines[i - 1] ?? '').startsWith('|') && lines[i - 1] !== '' ? `\n${line}` : line,
      )
      .join('\n')
      .replace(/\n{3,}/g, '\n\n')
      .trim()
  )
}

/** Every Markdown table in `text`, as rows of trimmed cells keyed by the header. */
export function parseTables(text: string): Record<string, string>[][] {
  const tables: Record<string, string>[][] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string
    if (!line.startsWith('|') || !/^\|[\s:|-]+\|$/.test(lines[i + 1] ?? '')) continue
    const header = cells(line)
    const rows: Record<string, string>[] = []
    let j = i + 2
    for (; j < lines.length && (lines[j] as string).startsWith('|'); j++) {
      const values = cells(lines[j] as string)
      rows.push(Object.fromEntries(header.map((name, k) => [name, values[k] ?? ''])))
    }
    tables.push(rows)
    i = j
  }
  return tables
}

function cells(line: string): string[] {
  return line
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((cell) => cell.trim())
}

/** First number in a cell (`1,234 ms` → 1234), or NaN. */
export function num(cell: string | undefined): number {
  const match = /-?[\d,]*\.?\d+/.exec(cell ?? '')
  return match === null ? Number.NaN : Number(match[0].replace(/,/g, ''))
}
