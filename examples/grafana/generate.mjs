// Writes ballast.json, the Grafana dashboard, from the panel list below:
// `node examples/grafana/generate.mjs && pnpm exec biome format --write examples/grafana`. Edit here rather than in the JSON, so
// the layout, the datasource references and the variable filters stay uniform.
// examples/orders-service/test/scenario.test.ts fails when the JSON is stale (and queries every
// expression against a real Prometheus, where the area under each per-minute panel must match the
// events the run counted); test/dashboard-queries.test.ts checks what the breaker state and
// per-minute expressions compute, with promtool.

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

// Grafana's own variable syntax, not a JavaScript template.
const ds = { type: 'prometheus', uid: '$' + '{datasource}' }
const sel = 'job=~"$job", instance=~"$instance"'
const rate = (metric, extra = '') => `rate(${metric}{${sel}${extra}}[$__rate_interval])`
// Rare events (breaker transitions, drain closes, shutdown hooks) as a rate per minute, drawn as
// lines. rate() handles counter resets sample by sample (a restarted instance, even one that
// counted back past its old value within one step); $__rate_interval spans at least a step and a
// scrape, so no sample falls between two windows at any zoom; and a scrape gap shows as a gap, not
// as one value holding the counter's whole history. The area under a line is the count; a lone
// event is a low bump about $__rate_interval wide, and the state timelines show each transition.
// Bars of per-step counts would invite adding them up, which no step-aligned PromQL gets exactly
// right across restarts, zoom levels and gaps.
const perMinute = (by, metric, extra = '') => `60 * sum by (${by}) (${rate(metric, extra)})`
const PER_MINUTE =
  'Averaged over $__rate_interval: the area under a line is the count (a rate of 2/min for 30 s is one event), and a lone event shows as a low bump a few scrapes wide.'

/** Each section: a row title and its panels, laid out left to right, 8 columns wide by default. */
const sections = [
  {
    title: 'Deadlines',
    panels: [
      {
        title: 'Deadline-expired ratio per route',
        description:
          'Share of requests that ran out of their deadline (504 answered, or the handler out of budget), per job and route, as alert BallastDeadlineExpiredRatioHigh computes it.',
        unit: 'percentunit',
        targets: [
          {
            expr: `sum by (job, route) (${rate('ballast_deadline_exceeded_total')}) / sum by (job, route) (${rate('ballast_deadline_requests_total')})`,
            legend: '{{job}} {{route}}',
          },
        ],
        thresholds: [0.05],
      },
      {
        title: 'Requests by route',
        unit: 'reqps',
        targets: [
          { expr: `sum by (job, route, method) (${rate('ballast_deadline_requests_total')})`, legend: '{{job}} {{method}} {{route}}' },
        ],
      },
      {
        title: 'Deadlines exceeded by reason',
        description: 'deadline: the route or header budget ran out here; inherited: an enclosing deadline expired first.',
        unit: 'reqps',
        targets: [
          { expr: `sum by (job, route, reason) (${rate('ballast_deadline_exceeded_total')})`, legend: '{{job}} {{route}} {{reason}}' },
        ],
      },
      {
        type: 'heatmap',
        title: 'Deadline budget at request start (req/s)',
        description:
          'The time budget each request started with: the route timeout, or less when the caller sent a request-timeout-ms header. Colour: requests per second starting with a budget in that bucket.',
        unit: 'reqps',
        targets: [{ expr: `sum by (le) (${rate('ballast_deadline_budget_seconds_bucket')})`, legend: '{{le}}', format: 'heatmap' }],
      },
      {
        type: 'heatmap',
        title: 'Overrun past the deadline (req/s)',
        description:
          'How long handlers kept running after their deadline expired: work that ignored the abort signal. Colour: requests per second whose overrun fell in that bucket.',
        unit: 'reqps',
        targets: [{ expr: `sum by (le) (${rate('ballast_deadline_overrun_seconds_bucket')})`, legend: '{{le}}', format: 'heatmap' }],
      },
      {
        title: 'Late writes and client closes',
        description:
          "Late writes: writes after the deadline answered, swallowed instead of throwing. Answered late: the handler's own answer finished after its deadline, before the deadline's timer could run (a busy event loop). Client closes: the caller hung up first.",
        unit: 'ops',
        targets: [
          { expr: `sum by (job, route) (${rate('ballast_deadline_late_writes_total')})`, legend: 'late writes {{job}} {{route}}' },
          { expr: `sum by (job, route) (${rate('ballast_deadline_answered_late_total')})`, legend: 'answered late {{job}} {{route}}' },
          { expr: `sum by (job, route) (${rate('ballast_deadline_client_closed_total')})`, legend: 'client closed {{job}} {{route}}' },
          {
            expr: `sum by (job, reason) (${rate('ballast_deadline_header_rejected_total')})`,
            legend: 'header rejected {{job}} ({{reason}})',
          },
        ],
      },
    ],
  },
  {
    title: 'Circuit breakers',
    panels: [
      {
        type: 'state-timeline',
        title: 'Breaker state',
        description:
          "One row per breaker and instance: each replica has its own breaker, so one may be open while another is half-open. A cluster's primary shows its workers' furthest state from closed.",
        width: 12,
        targets: [
          {
            // Each instance's code is the highest of its weighted states. A process reports one
            // state at 1; a cluster's primary (prom-client's AggregatorRegistry) reports how many
            // workers are in each, hence the clamp, and the maximum rather than the sum (two
            // workers half-open would read as open, one half-open and one open as disabled).
            expr:
              'max by (job, instance, breaker) (' +
              `clamp_max(ballast_breaker_state{${sel}, state="half_open"}, 1)` +
              ` or 2 * clamp_max(ballast_breaker_state{${sel}, state="open"}, 1)` +
              ` or 3 * clamp_max(ballast_breaker_state{${sel}, state="disabled"}, 1))`,
            legend: '{{breaker}} {{instance}}',
          },
        ],
        mappings: [
          ['0', 'closed', 'green'],
          ['1', 'half-open', 'yellow'],
          ['2', 'open', 'red'],
          ['3', 'disabled', 'gray'],
        ],
      },
      {
        title: 'State transitions per minute',
        description: `Breaker transitions per minute, per instance, by the state entered. ${PER_MINUTE} The Breaker state timeline shows each transition.`,
        width: 12,
        unit: 'opm',
        targets: [
          {
            expr: perMinute('job, instance, breaker, state', 'ballast_breaker_transitions_total'),
            legend: '{{job}} {{instance}} {{breaker}} → {{state}}',
          },
        ],
      },
      {
        title: 'Calls by outcome',
        unit: 'ops',
        stack: true,
        targets: [{ expr: `sum by (breaker, outcome) (${rate('ballast_breaker_calls_total')})`, legend: '{{breaker}} {{outcome}}' }],
      },
      {
        title: 'Fallbacks and rejections',
        description:
          'Fallbacks and retries of breakers used directly, and of the @ballast/fetch clients (counted by the client, not its breaker). Rejections: calls the breaker refused.',
        unit: 'ops',
        targets: [
          { expr: `sum by (breaker, result) (${rate('ballast_breaker_fallbacks_total')})`, legend: '{{breaker}} fallback {{result}}' },
          {
            expr: `sum by (client) (${rate('ballast_fetch_requests_total', ', status_class="fallback"')})`,
            legend: '{{client}} fallback (fetch)',
          },
          {
            expr: `sum by (breaker, reason) (${rate('ballast_breaker_rejected_calls_total')})`,
            legend: '{{breaker}} rejected ({{reason}})',
          },
          { expr: `sum by (breaker) (${rate('ballast_breaker_retries_total')})`, legend: '{{breaker}} retries' },
          { expr: `sum by (client) (${rate('ballast_fetch_retries_total')})`, legend: '{{client}} retries (fetch)' },
        ],
      },
      {
        title: 'Failure ratio against threshold',
        description:
          'The rolling failure ratio of each breaker; it opens when the ratio crosses the dashed threshold (once the volume threshold is met).',
        unit: 'percentunit',
        max: 1,
        targets: [
          { expr: `max by (breaker) (ballast_breaker_failure_ratio{${sel}})`, legend: '{{breaker}} failure ratio' },
          { expr: `max by (breaker) (ballast_breaker_failure_threshold_ratio{${sel}})`, legend: '{{breaker}} threshold', dashed: true },
        ],
      },
      {
        title: 'Call duration p50 / p99',
        unit: 's',
        targets: [
          {
            expr: `histogram_quantile(0.5, sum by (breaker, le) (${rate('ballast_breaker_call_duration_seconds_bucket')}))`,
            legend: '{{breaker}} p50',
          },
          {
            expr: `histogram_quantile(0.99, sum by (breaker, le) (${rate('ballast_breaker_call_duration_seconds_bucket')}))`,
            legend: '{{breaker}} p99',
          },
        ],
      },
      {
        title: 'Concurrent calls',
        unit: 'short',
        targets: [{ expr: `sum by (breaker) (ballast_breaker_concurrent_calls{${sel}})`, legend: '{{breaker}}' }],
      },
      {
        title: 'Outbound requests by status class',
        description: 'Requests of the @ballast/fetch clients; "fallback" counts responses served by a fallback instead of the dependency.',
        unit: 'reqps',
        stack: true,
        targets: [
          { expr: `sum by (client, status_class) (${rate('ballast_fetch_requests_total')})`, legend: '{{client}} {{status_class}}' },
        ],
      },
      {
        title: 'Fail-fast (budget too small to try)',
        unit: 'ops',
        targets: [{ expr: `sum by (client) (${rate('ballast_fetch_fail_fast_total')})`, legend: '{{client}}' }],
      },
    ],
  },
  {
    title: 'Drain',
    panels: [
      {
        type: 'state-timeline',
        title: 'Drain state',
        width: 12,
        targets: [
          {
            // The highest weighted state, clamped: a cluster's primary counts its workers in each state.
            expr:
              `max by (instance) (clamp_max(ballast_drain_state{${sel}, state="draining"}, 1)` +
              ` or 2 * clamp_max(ballast_drain_state{${sel}, state="closing"}, 1))`,
            legend: '{{instance}}',
          },
        ],
        mappings: [
          ['0', 'serving', 'green'],
          ['1', 'draining', 'yellow'],
          ['2', 'closing', 'orange'],
        ],
      },
      {
        title: 'In-flight requests',
        width: 6,
        unit: 'short',
        targets: [{ expr: `sum by (instance) (ballast_drain_inflight_requests{${sel}})`, legend: '{{instance}}' }],
      },
      {
        title: 'Open connections',
        width: 6,
        unit: 'short',
        targets: [{ expr: `sum by (instance) (ballast_drain_open_connections{${sel}})`, legend: '{{instance}}' }],
      },
      {
        title: 'Requests rejected while stopping, per minute',
        description: `Requests answered 503 because they arrived after the service stopped serving, per minute. Should stay at 0 when the readiness delay is long enough. ${PER_MINUTE}`,
        unit: 'reqpm',
        targets: [{ expr: perMinute('job, instance', 'ballast_drain_rejected_requests_total'), legend: '{{job}} {{instance}}' }],
      },
      {
        title: 'Connections closed by reason, per minute',
        description: `Connections closed by the drain, per minute. idle: keep-alive sockets closed while idle; after_response: closed right after their last response; forced: destroyed at the grace period (requests lost). ${PER_MINUTE}`,
        unit: 'opm',
        targets: [{ expr: perMinute('job, reason', 'ballast_drain_closed_connections_total'), legend: '{{job}} {{reason}}' }],
      },
      {
        title: 'Seconds since the drain started',
        description:
          "The drain's age as each instance measured it when scraped (ballast_drain_age_seconds, its own monotonic clock): 0 while serving; the line ends with the last scrape before the exit. Alert BallastDrainGracePeriodReached fires when a scrape saw it above 10 s.",
        unit: 's',
        targets: [
          {
            expr: `max by (job, instance) (ballast_drain_age_seconds{${sel}})`,
            legend: '{{job}} {{instance}}',
          },
        ],
        thresholds: [10],
      },
      {
        title: 'Shutdown hooks by outcome, per minute',
        description: `Shutdown hooks that ended, per minute, by hook and outcome (timed_out: its own timeout, or the grace period cut it short). A hook is counted when it ends, and the metrics port closes just before the exit, so the last hooks of a shutdown may end unscraped: the drain's log has every hook. ${PER_MINUTE}`,
        width: 12,
        unit: 'opm',
        targets: [
          {
            expr: perMinute('job, hook, outcome', 'ballast_drain_hook_duration_seconds_count'),
            legend: '{{job}} {{hook}} {{outcome}}',
          },
        ],
      },
      {
        title: 'Shutdown hook duration',
        description:
          'While an instance drains: how long each of its shutdown hooks ran, by outcome. A process runs its hooks once, so the sum of the histogram is that run; 0 until the hook ends. A drain that goes on once no request is in flight, its hooks still at 0, is waiting on a hook (they run last registered first).',
        width: 12,
        unit: 's',
        points: true,
        targets: [
          {
            expr:
              `sum by (job, instance, hook, outcome) (ballast_drain_hook_duration_seconds_sum{${sel}})` +
              ` and on (job, instance) (ballast_drain_age_seconds{${sel}} > 0)`,
            legend: '{{instance}} {{hook}} {{outcome}}',
          },
        ],
      },
    ],
  },
]

let id = 1
let y = 0
const panels = []
for (const section of sections) {
  panels.push({ type: 'row', id: id++, title: section.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y: y++ }, panels: [] })
  let x = 0
  for (const spec of section.panels) {
    const w = spec.width ?? 8
    if (x + w > 24) {
      x = 0
      y += 8
    }
    panels.push(panel(spec, { h: 8, w, x, y }))
    x += w
  }
  y += 8
}

function panel(spec, gridPos) {
  const targets = spec.targets.map((target, index) => ({
    datasource: ds,
    refId: String.fromCharCode(65 + index),
    expr: target.expr,
    legendFormat: target.legend,
    range: true,
    ...(target.format === undefined ? {} : { format: target.format }),
  }))
  const base = { id: id++, type: 'timeseries', title: spec.title, datasource: ds, gridPos, targets }
  if (spec.description !== undefined) base.description = spec.description
  if (spec.type === 'heatmap') {
    return {
      ...base,
      type: 'heatmap',
      options: {
        calculate: false,
        cellGap: 1,
        color: { mode: 'scheme', scheme: 'Oranges', exponent: 0.5, steps: 64, fill: 'dark-orange', reverse: false },
        yAxis: { axisPlacement: 'left', unit: 's' },
        ...(spec.unit === undefined ? {} : { cellValues: { unit: spec.unit } }),
        rowsFrame: { layout: 'auto' },
        tooltip: { mode: 'single', yHistogram: true, showColorScale: false },
        legend: { show: true },
        exemplars: { color: 'rgba(255,0,255,0.7)' },
      },
      fieldConfig: { defaults: { custom: { scaleDistribution: { type: 'linear' } } }, overrides: [] },
    }
  }
  if (spec.type === 'state-timeline') {
    const options = {}
    for (const [value, text, color] of spec.mappings) options[value] = { text, color, index: Number(value) }
    return {
      ...base,
      type: 'state-timeline',
      options: {
        mergeValues: true,
        showValue: 'auto',
        alignValue: 'left',
        rowHeight: 0.9,
        legend: { showLegend: true, displayMode: 'list', placement: 'bottom' },
      },
      fieldConfig: {
        defaults: {
          color: { mode: 'thresholds' },
          mappings: [{ type: 'value', options }],
          thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
          custom: { fillOpacity: 80, lineWidth: 0 },
        },
        overrides: [],
      },
    }
  }
  const custom = {
    drawStyle: 'line',
    lineWidth: 1,
    fillOpacity: spec.stack ? 60 : 10,
    showPoints: spec.points ? 'always' : 'never',
    spanNulls: false,
    stacking: { mode: spec.stack ? 'normal' : 'none', group: 'A' },
    ...(spec.thresholds === undefined ? {} : { thresholdsStyle: { mode: 'dashed' } }),
  }
  const steps = [{ color: 'green', value: null }, ...(spec.thresholds ?? []).map((value) => ({ color: 'red', value }))]
  const overrides = spec.targets
    .map((target, index) => ({ target, index }))
    .filter(({ target }) => target.dashed)
    .map(({ index }) => ({
      matcher: { id: 'byFrameRefID', options: String.fromCharCode(65 + index) },
      properties: [
        { id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } },
        { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
      ],
    }))
  return {
    ...base,
    options: { legend: { showLegend: true, displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'multi', sort: 'desc' } },
    fieldConfig: {
      defaults: {
        unit: spec.unit ?? 'short',
        min: 0,
        ...(spec.max === undefined ? {} : { max: spec.max }),
        color: { mode: 'palette-classic' },
        custom,
        thresholds: { mode: 'absolute', steps },
      },
      overrides,
    },
  }
}

const variable = (name, label, query) => ({
  name,
  label,
  type: 'query',
  datasource: ds,
  definition: query,
  query: { query, refId: `${name}-variable` },
  refresh: 2,
  includeAll: true,
  multi: true,
  allValue: '.*',
  current: { selected: true, text: ['All'], value: ['$__all'] },
  sort: 1,
  hide: 0,
})

const dashboard = {
  uid: 'ballast-resilience',
  title: 'ballast: deadlines, breakers, drain',
  description:
    "Resilience of Express services built with ballast. Metrics: see the packages' READMEs; alerts: examples/prometheus/alerts.yml.",
  tags: ['ballast', 'resilience', 'nodejs'],
  editable: true,
  graphTooltip: 1,
  schemaVersion: 39,
  version: 1,
  time: { from: 'now-15m', to: 'now' },
  refresh: '10s',
  timezone: 'browser',
  fiscalYearStartMonth: 0,
  liveNow: false,
  links: [],
  annotations: {
    list: [
      {
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      },
    ],
  },
  templating: {
    list: [
      {
        name: 'datasource',
        label: 'Data source',
        type: 'datasource',
        query: 'prometheus',
        refresh: 1,
        current: {},
        hide: 0,
        includeAll: false,
        multi: false,
        regex: '',
      },
      variable('job', 'Job', 'label_values(ballast_deadline_requests_total, job)'),
      variable('instance', 'Instance', 'label_values(ballast_deadline_requests_total{job=~"$job"}, instance)'),
    ],
  },
  panels,
}

const file = join(import.meta.dirname, 'ballast.json')
const text = `${JSON.stringify(dashboard, null, 2)}\n`
if (process.argv.includes('--check')) {
  // CI: the committed JSON (formatted by Biome) must hold what this file generates.
  if (JSON.stringify(JSON.parse(readFileSync(file, 'utf8'))) !== JSON.stringify(dashboard)) {
    console.error('examples/grafana/ballast.json is stale: run node examples/grafana/generate.mjs')
    process.exit(1)
  }
} else {
  writeFileSync(file, text)
}
