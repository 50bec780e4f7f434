import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dashboardExpressions, substituteVariables } from './support/promql.js'

const run = promisify(execFile)

interface ExprTest {
  readonly interval: string
  readonly input_series: readonly { series: string; values: string }[]
  readonly promql_expr_test: readonly { expr: string; eval_time: string; exp_samples: readonly { labels: string; value: number }[] }[]
}

/** The one expression of a dashboard panel, with Grafana's variables set to "All" (and `$__interval`, the query step, to `interval`). */
function panelExpression(title: string, interval?: string): string {
  const exprs = dashboardExpressions().filter((target) => target.panel === title)
  expect(exprs, `panel "${title}"`).toHaveLength(1)
  return substituteVariables(exprs[0]?.expr ?? '', undefined, interval)
}

/**
 * What dashboard expressions compute, checked by `promtool test rules` on
 * synthetic series: the expressions are read from the committed ballast.json,
 * so the check follows the generator. (scenario.test.ts only checks that they
 * return data from a real scrape.)
 */
describe('dashboard expressions under promtool', () => {
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ballast-dashboard-'))
  })

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  /** Runs the cases through `promtool test rules` (JSON is YAML); rejects with promtool's report on a failure. */
  async function promtoolTest(name: string, tests: readonly ExprTest[]): Promise<string> {
    const file = join(dir, `${name}.yml`)
    await writeFile(file, JSON.stringify({ rule_files: [], evaluation_interval: '30s', tests }, null, 2))
    try {
      const { stdout, stderr } = await run('promtool', ['test', 'rules', file], { timeout: 60_000 })
      return `${stdout}${stderr}`
    } catch (error) {
      const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string }
      throw new Error(`promtool test rules ${name}.yml failed:\n${stdout}${stderr}`)
    }
  }

  it('"Breaker state" codes each instance by its own state: replicas in different states are not added up', async () => {
    const expr = panelExpression('Breaker state')
    // a half-open, b open, c closed, d disabled: one state at 1 per instance, as the gauge is exposed.
    const states = { 'a:9464': 'half_open', 'b:9464': 'open', 'c:9464': 'closed', 'd:9464': 'disabled' } as const
    const input_series = Object.entries(states).flatMap(([instance, current]) =>
      ['closed', 'open', 'half_open', 'disabled'].map((state) => ({
        series: `ballast_breaker_state{job="orders",instance="${instance}",breaker="inventory",state="${state}"}`,
        values: state === current ? '1x4' : '0x4',
      })),
    )
    const sample = (instance: string, value: number) => ({ labels: `{job="orders",instance="${instance}",breaker="inventory"}`, value })
    expect(
      await promtoolTest('breaker-state', [
        {
          interval: '30s',
          input_series,
          promql_expr_test: [
            {
              expr,
              eval_time: '1m',
              // The panel's value mapping: 0 closed, 1 half-open, 2 open, 3 disabled.
              exp_samples: [sample('a:9464', 1), sample('b:9464', 2), sample('c:9464', 0), sample('d:9464', 3)],
            },
          ],
        },
      ]),
    ).toContain('SUCCESS')
  })

  it('"State transitions per interval" counts each transition once, across a restart, a new instance and an exit', async () => {
    // Grafana queries with $__interval as the step: 30 s here, so the bars are the results at 30 s, 1m, 1m30s, 2m.
    const expr = panelExpression('State transitions per interval', '30s')
    // Scraped every 10 s. a: transitions at 20 s, 40 s and 50 s, a restart between 70 s and
    // 80 s (its counter back at 0), then two more by 90 s. b: a new instance, first scraped
    // at 50 s with 5 transitions since it started, one more at 70 s. c: one transition at
    // 70 s, scraped, then the instance exits (stale from 80 s on, before the 90 s step).
    const series = (instance: string) =>
      `ballast_breaker_transitions_total{job="orders",instance="${instance}",breaker="inventory",state="open"}`
    const input_series = [
      { series: series('a:9464'), values: '0 0 1 1 2 3 3 3 1 2 2 2 2' },
      { series: series('b:9464'), values: '_x5 5 5 6 6 6 6 6 6' },
      { series: series('c:9464'), values: '0 0 0 0 0 0 0 1 stale' },
    ]
    const bar = (value: number) => [{ labels: '{breaker="inventory",state="open"}', value }]
    expect(
      await promtoolTest('transitions', [
        {
          interval: '10s',
          input_series,
          promql_expr_test: [
            { expr, eval_time: '30s', exp_samples: bar(1) },
            // a: 2; b: 5.
            { expr, eval_time: '1m', exp_samples: bar(7) },
            // a: 2 since its restart (3 -> 2 is not -1); b: 1; c: 1, reported before it exited.
            { expr, eval_time: '1m30s', exp_samples: bar(4) },
            { expr, eval_time: '2m', exp_samples: bar(0) },
          ],
        },
      ]),
    ).toContain('SUCCESS')
  })

  it('"Seconds since the drain started" stays at the age last scraped after the instance exits', async () => {
    const expr = panelExpression('Seconds since the drain started')
    // Scraped every 30 s: a's drain started at 297 s, the 300 s scrape saw it, then the
    // instance was gone (its last sample still returned for 5 minutes); b keeps serving.
    const input_series = [
      { series: 'ballast_drain_started_timestamp_seconds{job="orders",instance="a:9464"}', values: '0x9 297 _x10' },
      { series: 'ballast_drain_started_timestamp_seconds{job="orders",instance="b:9464"}', values: '0x20' },
    ]
    const age = [{ labels: '{instance="a:9464"}', value: 3 }]
    expect(
      await promtoolTest('drain-age', [
        {
          interval: '30s',
          input_series,
          promql_expr_test: [
            { expr, eval_time: '4m', exp_samples: [] },
            { expr, eval_time: '5m', exp_samples: age },
            { expr, eval_time: '6m', exp_samples: age },
            { expr, eval_time: '9m', exp_samples: age },
          ],
        },
      ]),
    ).toContain('SUCCESS')
  })
})
