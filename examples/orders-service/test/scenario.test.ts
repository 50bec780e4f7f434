import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadInventoryConfig } from '../src/config.js'
import { freePort } from '../src/demo/processes.js'
import { runScenario, type ScenarioResult } from '../src/demo/scenario.js'
import { startPostgres } from './support/postgres.js'
import {
  alertExpressions,
  dashboardExpressions,
  EXAMPLES,
  metricNames,
  substituteVariables,
  withBoolComparisons,
} from './support/promql.js'

const run = promisify(execFile)
const EXAMPLE = join(EXAMPLES, 'orders-service')
const PROMETHEUS_DIR = join(EXAMPLES, 'prometheus')

/** True while a process with this id exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Latency checks the scenario did not judge because the machine was oversubscribed: printed, so a green run says what it skipped. */
function reportNotJudged(result: ScenarioResult): void {
  const notJudged = result.phases.flatMap((phase) =>
    phase.checks.filter((c) => c.detail.includes('not judged')).map((c) => `${phase.name}: ${c.label} (${c.detail})`),
  )
  if (notJudged.length > 0) console.warn(`latency checks not judged on a busy machine:\n  ${notJudged.join('\n  ')}`)
}

function failedChecks(result: ScenarioResult): string[] {
  return result.phases.flatMap((phase) => phase.checks.filter((c) => !c.ok).map((c) => `${phase.name}: ${c.label} (${c.detail})`))
}

/** Runs promtool; resolves with its combined output, rejects with it on a non-zero exit. */
async function promtool(args: string[], cwd = PROMETHEUS_DIR): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd, timeout: 60_000 })
    return `${stdout}${stderr}`
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string }
    throw new Error(`promtool ${args.join(' ')} failed:\n${stdout}${stderr}`)
  }
}

describe('Prometheus rules, dashboard and manifests', () => {
  it('promtool check config, check rules and test rules are clean', async () => {
    expect(await promtool(['check', 'config', 'prometheus.yml'])).toContain('SUCCESS')
    expect(await promtool(['check', 'rules', 'alerts.yml'])).toContain('SUCCESS: 5 rules found')
    // One file per rule evaluation interval (5 s, 30 s, 1 m): promtool takes one per file.
    const tests = ['alerts.test.yml', 'alerts.eval-30s.test.yml', 'alerts.eval-1m.test.yml']
    expect((await readdir(PROMETHEUS_DIR)).filter((file) => file.endsWith('.test.yml')).sort()).toEqual([...tests].sort())
    const report = await promtool(['test', 'rules', ...tests])
    for (const file of tests) expect(report).toMatch(new RegExp(`Unit Testing: +${file.replaceAll('.', '\\.')}\\s+SUCCESS`))
  })

  it('every alert links its RUNBOOK.md section and the dashboard', async () => {
    const rules = await readFile(join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8')
    const runbook = await readFile(join(PROMETHEUS_DIR, 'RUNBOOK.md'), 'utf8')
    const { uid } = JSON.parse(await readFile(join(EXAMPLES, 'grafana', 'ballast.json'), 'utf8')) as { uid: string }
    const blocks = rules.split(/^\s*- alert:\s*/m).slice(1)
    expect(blocks.map((block) => block.split('\n')[0])).toEqual(alertExpressions().map((a) => a.alert))
    for (const block of blocks) {
      const name = block.split('\n')[0]?.trim() ?? ''
      const annotation = (key: string) => new RegExp(`^\\s*${key}:\\s*"([^"]*)"`, 'm').exec(block)?.[1]
      // GitHub's anchor of a `## Name` heading: the name in lower case.
      expect(annotation('runbook_url'), name).toBe(`RUNBOOK.md#${name.toLowerCase()}`)
      expect(runbook, name).toMatch(new RegExp(`^## ${name}$`, 'm'))
      expect(annotation('dashboard'), name).toMatch(new RegExp(`^/d/${uid}\\?var-job=\\{\\{ \\$labels\\.job \\}\\}`))
    }
  })

  it('the committed dashboard is what examples/grafana/generate.mjs produces, with a datasource variable and no __inputs', async () => {
    await run(process.execPath, [join(EXAMPLES, 'grafana', 'generate.mjs'), '--check'])
    const dashboard = JSON.parse(await readFile(join(EXAMPLES, 'grafana', 'ballast.json'), 'utf8')) as Record<string, unknown> & {
      templating: { list: { name: string; type: string }[] }
      panels: { type: string; title: string }[]
    }
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39)
    expect(dashboard).not.toHaveProperty('__inputs')
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource' }))
    expect(dashboard.panels.filter((panel) => panel.type === 'row').map((panel) => panel.title)).toEqual([
      'Deadlines',
      'Circuit breakers',
      'Drain',
    ])
  })

  it('sizes terminationGracePeriodSeconds by the drain budget formula and bounds evictions with a PodDisruptionBudget', async () => {
    const yaml = await readFile(join(EXAMPLES, 'kubernetes', 'orders-service.yaml'), 'utf8')
    const env = (name: string) => Number(new RegExp(`- name: ${name}\\s+value: "?(\\d+)"?`).exec(yaml)?.[1])
    const termination = Number(/terminationGracePeriodSeconds: (\d+)/.exec(yaml)?.[1])
    const preStop = Number(/command: \["sleep", "(\d+)"\]/.exec(yaml)?.[1])
    const grace = env('DRAIN_GRACE_PERIOD_MS') / 1000
    const readiness = env('DRAIN_READINESS_DELAY_MS') / 1000
    const longestRequest = env('REQUEST_TIMEOUT_MS') / 1000
    const hooks = 1 + 5 // logger flush and store close timeouts (orders-service.ts)
    expect(grace).toBeGreaterThanOrEqual(readiness + longestRequest + hooks + 1)
    expect(termination).toBeGreaterThan(preStop + grace)
    expect(yaml).toMatch(/readinessProbe:[\s\S]*?httpGet:\s+path: \/readyz/)
    expect(yaml).toMatch(/livenessProbe:[\s\S]*?path: \/livez/)
    // The readiness probe tolerates one failed probe, yet sees the drain's 503 while the
    // pod still serves: within the readiness delay.
    const probe = /readinessProbe:[\s\S]*?(?=\n {10}\w)/.exec(yaml)?.[0] ?? ''
    const period = Number(/periodSeconds: (\d+)/.exec(probe)?.[1])
    const failures = Number(/failureThreshold: (\d+)/.exec(probe)?.[1])
    expect(failures).toBeGreaterThanOrEqual(2)
    expect(period * failures).toBeLessThan(readiness)
    // Evictions (node drains) take one replica at a time: a PodDisruptionBudget selects the Deployment's pods.
    const podLabels = /template:\s+metadata:\s+labels:\s+(\S+: \S+)/.exec(yaml)?.[1]
    const budget = /^apiVersion: policy\/v1\nkind: PodDisruptionBudget\n[\s\S]*?(?=^---|(?![\s\S]))/m.exec(yaml)?.[0] ?? ''
    expect(podLabels).toBe('app.kubernetes.io/name: orders')
    expect(budget).toMatch(/^ {2}maxUnavailable: 1$/m)
    expect(/selector:\s+matchLabels:\s+(\S+: \S+)/.exec(budget)?.[1]).toBe(podLabels)
    expect(Number(/replicas: (\d+)/.exec(yaml)?.[1])).toBeGreaterThan(1)
    // Pod Security "restricted".
    expect(yaml).toMatch(/seccompProfile:\s+type: RuntimeDefault/)
    expect(yaml).toMatch(/runAsNonRoot: true/)
    expect(yaml).toMatch(/allowPrivilegeEscalation: false/)
    // The inventory listens on its INVENTORY_PORT: the URL names that port, not HTTP's 80.
    const inventoryUrl = new URL(/- name: INVENTORY_URL\s+value: (\S+)/.exec(yaml)?.[1] ?? '')
    expect(Number(inventoryUrl.port)).toBe(loadInventoryConfig({}).port)
  })
})

describe('the demo scenario', () => {
  let prometheus: ChildProcess | undefined
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ballast-demo-'))
    // The scenario starts the services from dist/: build the example (a no-op when up to date).
    const tsc = createRequire(join(EXAMPLES, '..', 'package.json')).resolve('typescript/bin/tsc')
    await run(process.execPath, [tsc, '-b', EXAMPLE], { timeout: 120_000 })
  }, 150_000)

  afterAll(async () => {
    if (prometheus !== undefined && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus?.once('exit', resolve))
      prometheus.kill('SIGTERM')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  })

  it('passes under a real Prometheus, which then has data for every dashboard and alert expression', { timeout: 170_000 }, async () => {
    const ports = {
      orders: await freePort(),
      ordersMetrics: await freePort(),
      inventory: await freePort(),
      inventoryMetrics: await freePort(),
    }
    const promPort = await freePort()
    // The committed prometheus.yml, with the demo's ports and a 1 s scrape interval.
    const config = (await readFile(join(PROMETHEUS_DIR, 'prometheus.yml'), 'utf8'))
      .replaceAll('5s', '1s')
      .replace('127.0.0.1:9464', `127.0.0.1:${ports.ordersMetrics}`)
      .replace('127.0.0.1:9465', `127.0.0.1:${ports.inventoryMetrics}`)
      .replace('- alerts.yml', `- ${join(PROMETHEUS_DIR, 'alerts.yml')}`)
    await writeFile(join(dir, 'prometheus.yml'), config)
    await promtool(['check', 'config', join(dir, 'prometheus.yml')], dir)
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    let promLog = ''
    prometheus.stderr?.on('data', (chunk: Buffer) => {
      promLog = (promLog + chunk.toString()).slice(-4_000)
    })
    const api = `http://127.0.0.1:${promPort}`
    for (let i = 0; ; i++) {
      const ready = await fetch(`${api}/-/ready`).then(
        (r) => r.status === 200,
        () => false,
      )
      if (ready) break
      if (i > 200 || prometheus.exitCode !== null) throw new Error(`prometheus did not start:\n${promLog}`)
      await sleep(100)
    }

    let output = ''
    const result = await runScenario({
      distDir: join(EXAMPLE, 'dist'),
      outDir: join(dir, 'run'),
      ports,
      speed: 0.6,
      tty: false,
      write: (text) => {
        output += text
      },
    })
    reportNotJudged(result)
    expect(failedChecks(result), output).toEqual([])
    // Every order answered 201 in the store; more rows only for POSTs answered 504 whose insert finished after the deadline.
    expect(result.missing).toBe(0)
    expect(result.rows - result.created).toBeGreaterThanOrEqual(0)
    expect(result.rows - result.created).toBeLessThanOrEqual(result.postsTimedOut)
    expect(result.exitCode).toBe(0)
    expect(result.pids).toHaveLength(2)
    expect(result.pids.filter(alive), 'services left running').toEqual([])

    const query = async (expr: string) => {
      const params = new URLSearchParams({
        query: expr,
        start: String(result.startedAtUnix / 1000 - 5),
        end: String(result.endedAtUnix / 1000 + 1),
        step: '1',
      })
      const response = await fetch(`${api}/api/v1/query_range?${params}`)
      const body = (await response.json()) as { status: string; error?: string; data?: { result: unknown[] } }
      if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`)
      return body.data?.result ?? []
    }

    const empty: string[] = []
    const dashboard = dashboardExpressions()
    for (const { panel, expr } of dashboard) {
      if ((await query(substituteVariables(expr))).length === 0) empty.push(`panel "${panel}": ${expr}`)
    }
    const alerts = alertExpressions()
    expect(alerts.map((a) => a.alert)).toEqual([
      'BallastBreakerOpenTooLong',
      'BallastDeadlineExpiredRatioHigh',
      'BallastFetchFallbackRatioHigh',
      'BallastBreakerFlapping',
      'BallastDrainGracePeriodReached',
    ])
    for (const { alert, expr } of alerts) {
      if ((await query(withBoolComparisons(expr))).length === 0) empty.push(`alert ${alert}: ${withBoolComparisons(expr)}`)
    }
    expect(empty).toEqual([])

    // The per-minute panels: the area under their lines is the count of events. Each panel's
    // area over the run (queried every second, like Grafana at this zoom) against the counter's
    // own increase, read from the raw samples with resets handled.
    const from = result.startedAtUnix / 1000 - 10
    const to = result.endedAtUnix / 1000 + 10
    const area = async (expr: string) => {
      const params = new URLSearchParams({ query: expr, start: String(from), end: String(to), step: '1' })
      const body = (await (await fetch(`${api}/api/v1/query_range?${params}`)).json()) as {
        data: { result: { values: [number, string][] }[] }
      }
      return body.data.result.flatMap(({ values }) => values).reduce((sum, [, value]) => sum + Number(value) / 60, 0)
    }
    const counted = async (metric: string) => {
      const params = new URLSearchParams({ query: `${metric}[15m]`, time: String(to) })
      const body = (await (await fetch(`${api}/api/v1/query?${params}`)).json()) as {
        data: { result: { values: [number, string][] }[] }
      }
      let total = 0
      for (const { values } of body.data.result) {
        for (let i = 1; i < values.length; i++) {
          const [previous, current] = [Number(values[i - 1]?.[1]), Number(values[i]?.[1])]
          total += current >= previous ? current - previous : current
        }
      }
      return total
    }
    const perMinute = dashboard.filter(({ panel }) => panel.endsWith(' per minute'))
    expect(perMinute.map(({ panel }) => panel)).toEqual([
      'State transitions per minute',
      'Requests rejected while stopping, per minute',
      'Connections closed by reason, per minute',
      'Shutdown hooks by outcome, per minute',
    ])
    const areas = []
    for (const { panel, expr } of perMinute) {
      const metric = metricNames(expr)[0] ?? ''
      areas.push({ panel, area: await area(substituteVariables(expr)), counted: await counted(metric) })
    }
    console.info('[per-minute panels] area under the lines against the events counted:', JSON.stringify(areas))
    // The slow phase trips and closes the breaker, the drain closes connections: both have events.
    expect(areas.filter(({ counted }) => counted > 0).map(({ panel }) => panel)).toEqual(
      expect.arrayContaining(['State transitions per minute', 'Connections closed by reason, per minute']),
    )
    // rate() is exact only inside a series: it does not extrapolate a counter below 0 (a series'
    // first events read a little low) and extrapolates past an exit's last scrape (events in it
    // read up to about half again as many). Hence a tolerance: 30 % or one event.
    for (const { panel, area: under, counted } of areas) {
      expect(Math.abs(under - counted), `${panel}: area ${under} for ${counted} events`).toBeLessThanOrEqual(Math.max(1, 0.3 * counted))
    }

    // Which series an alert's condition (its `for` aside) held for during the run, as label sets.
    const holds = async (alert: string, labels: string[]) => {
      const expr = alerts.find((a) => a.alert === alert)?.expr ?? ''
      const series = (await query(expr)) as { metric: Record<string, string> }[]
      return series.map(({ metric }) => Object.fromEntries(labels.map((label) => [label, metric[label]])))
    }
    // The slow phase trips the deadline alert where the budget runs out: on the slow
    // inventory, whose requests carry the orders service's remaining budget, so they
    // expire there as "inherited". The orders service cuts its wait and serves cached
    // stock: the fallback alert's condition holds for its inventory client.
    expect(await holds('BallastDeadlineExpiredRatioHigh', ['job', 'route'])).toContainEqual({ job: 'inventory', route: '/stock/:itemId' })
    const inherited = (await query('sum by (job, reason) (increase(ballast_deadline_exceeded_total{job="inventory"}[2m])) > 0')) as {
      metric: Record<string, string>
    }[]
    expect(inherited.map(({ metric }) => metric.reason)).toEqual(['inherited'])
    expect(await holds('BallastFetchFallbackRatioHigh', ['job', 'client'])).toEqual([{ job: 'orders', client: 'inventory' }])
  })

  it('scripts/demo.mjs passes without a TTY on PostgreSQL (rows == 201 answers across SIGTERM) and leaves no process behind', {
    timeout: 170_000,
  }, async () => {
    const postgres = await startPostgres()
    try {
      const ports = [await freePort(), await freePort(), await freePort(), await freePort()]
      const out = join(dir, 'run-postgres')
      // The real entry point, stdout a pipe: plain lines, no live panel.
      const demo = spawn(
        process.execPath,
        [
          join(EXAMPLE, 'scripts', 'demo.mjs'),
          '--speed',
          '0.6',
          '--out',
          out,
          '--database-url',
          postgres.connectionString,
          '--orders-port',
          String(ports[0]),
          '--metrics-port',
          String(ports[1]),
          '--inventory-port',
          String(ports[2]),
          '--inventory-metrics-port',
          String(ports[3]),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let output = ''
      demo.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
      })
      demo.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
      })
      const code = await new Promise<number | null>((resolve) => demo.once('close', resolve))
      expect(code, output).toBe(0)
      expect(output).not.toContain('\u001b[')
      expect(output).toMatch(/^\[ *\d+s\] healthy +req\/s=/m)
      expect(output).toMatch(/✓ rows in the store == 201 answers: \d+ rows, \d+ created/)
      expect(output).toContain('demo passed')
      const result = JSON.parse(await readFile(join(out, 'timeline.json'), 'utf8')) as ScenarioResult
      reportNotJudged(result)
      expect(result.rows).toBeGreaterThan(100)
      // Every 201 in the store; more only for POSTs answered 504 whose insert finished after the deadline.
      expect(result.missing).toBe(0)
      expect(result.rows - result.created).toBeGreaterThanOrEqual(0)
      expect(result.rows - result.created).toBeLessThanOrEqual(result.postsTimedOut)
      expect(result.pids.filter(alive), 'services left running').toEqual([])
      for (const port of ports) {
        await expect(fetch(`http://127.0.0.1:${port}/`), `port ${port} still open`).rejects.toThrow()
      }
    } finally {
      await postgres.stop()
    }
  })
})
