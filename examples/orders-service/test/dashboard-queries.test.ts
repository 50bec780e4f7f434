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

  /** Instances of a state gauge: how many series of each at 1 (a cluster primary counts its workers), and the panel's code for them. */
  type StateCases = Record<string, { readonly at: Partial<Record<string, number>>; readonly code: number }>

  /** Checks a state-timeline panel's codes at 1 m on synthetic series of a state gauge. */
  async function stateCodes(
    name: string,
    expr: string,
    gauge: { states: readonly string[]; series: (instance: string, state: string) => string; sample: (instance: string) => string },
    cases: StateCases,
  ): Promise<string> {
    const input_series = Object.entries(cases).flatMap(([instance, { at }]) =>
      gauge.states.map((state) => ({ series: gauge.series(instance, state), values: `${at[state] ?? 0}x4` })),
    )
    const exp_samples = Object.entries(cases).map(([instance, { code }]) => ({ labels: gauge.sample(instance), value: code }))
    return promtoolTest(name, [{ interval: '30s', input_series, promql_expr_test: [{ expr, eval_time: '1m', exp_samples }] }])
  }

  it('"Breaker state" codes each instance by its own state: replicas in different states are not added up', async () => {
    const breakerState = {
      states: ['closed', 'open', 'half_open', 'disabled'],
      series: (instance: string, state: string) =>
        `ballast_breaker_state{job="orders",instance="${instance}",breaker="inventory",state="${state}"}`,
      sample: (instance: string) => `{job="orders",instance="${instance}",breaker="inventory"}`,
    }
    // The panel's value mapping: 0 closed, 1 half-open, 2 open, 3 disabled. a to d are processes, one
    // state at 1 each; e and f are cluster primaries of 2 workers, which count the workers in each state.
    const cases: StateCases = {
      'a:9464': { at: { half_open: 1 }, code: 1 },
      'b:9464': { at: { open: 1 }, code: 2 },
      'c:9464': { at: { closed: 1 }, code: 0 },
      'd:9464': { at: { disabled: 1 }, code: 3 },
      'e:9464': { at: { half_open: 2 }, code: 1 },
      'f:9464': { at: { half_open: 1, open: 1 }, code: 2 },
    }
    expect(await stateCodes('breaker-state', panelExpression('Breaker state'), breakerState, cases)).toContain('SUCCESS')
  })

  it('"Drain state" codes each instance by its furthest state, also on a cluster primary that counts its workers', async () => {
    const drainState = {
      states: ['serving', 'draining', 'closing'],
      series: (instance: string, state: string) => `ballast_drain_state{job="orders",instance="${instance}",state="${state}"}`,
      sample: (instance: string) => `{instance="${instance}"}`,
    }
    // The panel's value mapping: 0 serving, 1 draining, 2 closing. c and d are cluster primaries of 2 workers.
    const cases: StateCases = {
      'a:9464': { at: { draining: 1 }, code: 1 },
      'b:9464': { at: { closing: 1 }, code: 2 },
      'c:9464': { at: { draining: 2 }, code: 1 },
      'd:9464': { at: { draining: 1, closing: 1 }, code: 2 },
    }
    expect(await stateCodes('drain-state', panelExpression('Drain state'), drainState, cases)).toContain('SUCCESS')
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
