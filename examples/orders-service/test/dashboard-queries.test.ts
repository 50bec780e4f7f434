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

/** The one expression of a dashboard panel, with Grafana's variables set to "All" (and `$__rate_interval` to `rateInterval`). */
function panelExpression(title: string, rateInterval?: string): string {
  const exprs = dashboardExpressions().filter((target) => target.panel === title)
  expect(exprs, `panel "${title}"`).toHaveLength(1)
  return substituteVariables(exprs[0]?.expr ?? '', rateInterval)
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

  it('"State transitions per minute" keeps its rate across a restart that counts back past the old value, per job and instance', async () => {
    // Scraped every 10 s, so Grafana's $__rate_interval is 40 s (4 scrapes).
    const expr = panelExpression('State transitions per minute', '40s')
    const series = (job: string, instance: string) =>
      `ballast_breaker_transitions_total{job="${job}",instance="${instance}",breaker="db",state="open"}`
    const input_series = [
      // One transition per scrape. The process restarts between 50 s and 60 s (same instance
      // label, as a container restarted in its pod) and has counted 1 by its first scrape, then
      // goes on past the 5 it had reached before.
      { series: series('orders', 'a:9464'), values: '0+1x5 1+1x15' },
      // Another job with a breaker of the same name: two per scrape, kept apart.
      { series: series('inventory', 'a:9465'), values: '0+2x21' },
    ]
    const perMinute = (orders: number, inventory: number) => [
      { labels: '{job="inventory",instance="a:9465",breaker="db",state="open"}', value: inventory },
      { labels: '{job="orders",instance="a:9464",breaker="db",state="open"}', value: orders },
    ]
    expect(
      await promtoolTest('transitions', [
        {
          interval: '10s',
          input_series,
          promql_expr_test: [
            // Windows over the restart (on the 30 s evaluation grid, where promtool has loaded the
            // samples up to the evaluation time): 5 -> 1 is one transition, not -4 nor 0.
            { expr, eval_time: '1m', exp_samples: perMinute(6, 12) },
            { expr, eval_time: '1m30s', exp_samples: perMinute(6, 12) },
            { expr, eval_time: '2m', exp_samples: perMinute(6, 12) },
          ],
        },
      ]),
    ).toContain('SUCCESS')
  })
})
