import { execFile } from 'node:child_process'
import http from 'node:http'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'
import { ExitCode } from '../src/exit-codes.js'
import { startChildServer } from './support/child-server.js'
import { RawConnection } from './support/raw-http.js'

const run = promisify(execFile)

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          body += chunk
        })
        res.on('end', () => resolve(body))
      })
      .on('error', reject)
  })
}

function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}${labels} `))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

async function promtool(text: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile('promtool', ['check', 'metrics'], (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), output: stdout + stderr }),
    )
    child.stdin?.end(text)
  })
}

// A metrics server attached last keeps answering while the app drains; its scrapes
// show the state moving, in-flight requests falling to 0, connections closing by
// reason and the drain's age growing. The exposition passes `promtool check metrics`.
it('drain metrics are scraped during the drain and pass promtool', async () => {
  await run('promtool', ['--version']).catch(() => {
    throw new Error('promtool not found on PATH: install the Prometheus "promtool" binary (/usr/bin/promtool)')
  })
  const server = await startChildServer({ readinessDelay: 300, gracePeriod: 10_000, metrics: true, hook: 'slow' })
  const metricsPort = server.metricsPort ?? 0
  const prefix = 'ballast_drain_'
  const before = await scrape(metricsPort)
  expect(sample(before, `${prefix}state`, '{state="serving"}')).toBe(1)
  expect(sample(before, `${prefix}closed_connections_total`, '{reason="forced"}')).toBe(0)
  expect(sample(before, `${prefix}hook_duration_seconds_count`, '{hook="slow",outcome="timed_out"}')).toBe(0)
  expect(sample(before, `${prefix}age_seconds`)).toBe(0)

  // Idle keep-alive connections (closed as idle) and slow requests (closed after their response).
  const idle = await Promise.all(Array.from({ length: 4 }, () => RawConnection.open(server.port)))
  for (const connection of idle) await connection.get('/fast')
  const busy = await Promise.all(Array.from({ length: 6 }, () => RawConnection.open(server.port)))
  const slow = busy.map((connection) => connection.get('/slow?ms=600'))
  await new Promise((resolve) => setTimeout(resolve, 50))
  const killedAt = server.kill('SIGTERM')

  const scrapes: string[] = []
  /** Per scrape: whether it was sent after this process had read the child's `draining` line. */
  const sentAfterDraining: boolean[] = []
  /** Per scrape: this process's `performance.now()` when it was sent and when its body was in. */
  const sentAt: number[] = []
  const receivedAt: number[] = []
  /** When this process first saw the child's `draining` line: the drain had started by then. */
  let drainingSeenAt: number | undefined
  let scrapeError: unknown
  for (const deadline = performance.now() + 5_000; performance.now() < deadline; ) {
    try {
      const after = server.events.some((event) => event.event === 'state' && event.state === 'draining')
      const sent = performance.now()
      if (after) drainingSeenAt ??= sent
      scrapes.push(await scrape(metricsPort))
      sentAt.push(sent)
      receivedAt.push(performance.now())
      sentAfterDraining.push(after)
    } catch (error) {
      scrapeError = error
      break // the metrics server closed: the app is drained
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  const responses = await Promise.all(slow)
  const exit = await server.exited
  const series = scrapes.map((text) => ({
    serving: sample(text, `${prefix}state`, '{state="serving"}'),
    draining: sample(text, `${prefix}state`, '{state="draining"}'),
    closing: sample(text, `${prefix}state`, '{state="closing"}'),
    inflight: sample(text, `${prefix}inflight_requests`),
    open: sample(text, `${prefix}open_connections`),
    idle: sample(text, `${prefix}closed_connections_total`, '{reason="idle"}'),
    afterResponse: sample(text, `${prefix}closed_connections_total`, '{reason="after_response"}'),
    rejected: sample(text, `${prefix}rejected_requests_total`),
    started: sample(text, `${prefix}started_timestamp_seconds`),
    age: sample(text, `${prefix}age_seconds`),
  }))
  console.info(
    `[drain metrics] ${scrapes.length} scrapes during the drain (${sentAfterDraining.filter(Boolean).length} sent after the child reported draining), then ${String(scrapeError)}:`,
    JSON.stringify(series),
  )

  expect(responses.every((response) => response.status === 200 && response.headers.connection === 'close')).toBe(true)
  expect(exit.code).toBe(ExitCode.OK)
  // The state gauge names exactly one state in every scrape, before the signal and all
  // through the drain.
  const stateSum = (text: string) =>
    ['serving', 'draining', 'closing']
      .map((state) => sample(text, `${prefix}state`, `{state="${state}"}`) ?? Number.NaN)
      .reduce((a, b) => a + b)
  expect([before, ...scrapes].map(stateSum)).toEqual(Array.from({ length: scrapes.length + 1 }, () => 1))
  // `serving` is 0 from the signal on. The child may answer a scrape sent right after the kill
  // before it handles the signal (on a busy machine it does), so each scrape is judged by its
  // own started timestamp (read in the same collection as the state): 0 while serving, set
  // from the first signal. And a scrape sent once the child had reported `draining` must see both.
  expect(series.map((point) => ({ serving: point.serving, started: (point.started ?? 0) > 0 }))).toEqual(
    series.map((point) => ((point.started ?? 0) > 0 ? { serving: 0, started: true } : { serving: 1, started: false })),
  )
  const afterDraining = series.filter((_, index) => sentAfterDraining[index])
  expect(afterDraining.length).toBeGreaterThanOrEqual(series.length - 3)
  expect(afterDraining.map((point) => [point.serving, (point.started ?? 0) > 0])).toEqual(afterDraining.map(() => [0, true]))
  expect(series.some((point) => point.draining === 1)).toBe(true)
  expect(series.some((point) => point.closing === 1)).toBe(true)
  expect(Math.max(...series.map((point) => point.inflight ?? 0))).toBe(6)
  const last = series.at(-1)
  expect(last?.inflight).toBe(0)
  expect(last?.closing).toBe(1)
  expect(last?.idle).toBe(4)
  // The six slow requests, plus scrapes answered with `Connection: close`.
  expect(last?.afterResponse).toBeGreaterThanOrEqual(6)
  // The metrics server kept answering after the app drained, while the 150 ms hook ran.
  expect(series.filter((point) => point.inflight === 0 && point.closing === 1).length).toBeGreaterThanOrEqual(2)
  expect(last?.rejected).toBe(0)
  expect(Math.abs((last?.started ?? 0) - Date.now() / 1000)).toBeLessThan(30)

  // The drain's age, measured by the child's monotonic clock when it answered the scrape:
  // 0 while serving, then growing from scrape to scrape. It cannot exceed the time from the
  // signal to the scrape's answer, nor fall short of the time from this process seeing the
  // `draining` line (the drain had started by then) to sending the scrape.
  const ages = series.map((point) => point.age ?? Number.NaN)
  expect(series.filter((point) => (point.started ?? 0) === 0).map((point) => point.age)).toEqual(
    series.filter((point) => (point.started ?? 0) === 0).map(() => 0),
  )
  const drainingAges = ages.filter((_, index) => (series[index]?.started ?? 0) > 0)
  expect(drainingAges.length).toBeGreaterThanOrEqual(afterDraining.length)
  expect(drainingAges.every((age, index) => age > 0 && (index === 0 || age > (drainingAges[index - 1] ?? 0)))).toBe(true)
  const seenAt = drainingSeenAt ?? Number.POSITIVE_INFINITY
  const bounds = ages.map((age, index) => ({
    age,
    atMost: ((receivedAt[index] ?? 0) - killedAt) / 1000,
    atLeast: Math.max(0, ((sentAt[index] ?? 0) - seenAt) / 1000),
  }))
  const draining = bounds.filter(({ age }) => age > 0)
  console.info(
    `[drain metrics] age of ${draining.length} draining scrapes: at most ${Math.max(...draining.map(({ age, atMost }) => atMost - age)).toFixed(4)} s below the signal-to-answer time, at most ${Math.max(...draining.map(({ age, atLeast }) => age - atLeast)).toFixed(4)} s above the seen-to-sent time`,
  )
  // 1 ms for the rounding of two clocks read in two processes.
  expect(bounds.filter(({ age, atMost, atLeast }) => age > atMost + 0.001 || age < atLeast - 0.001)).toEqual([])
  // Within one scrape round trip plus the signal's delivery: the later scrapes pin it closely.
  expect(bounds.some(({ atLeast }) => atLeast > 0.2)).toBe(true)

  for (const text of [before, scrapes[Math.floor(scrapes.length / 2)] ?? '', scrapes.at(-1) ?? '']) {
    expect(text).toContain('# TYPE ballast_drain_age_seconds gauge\n')
    const { code, output } = await promtool(text)
    expect(output).toBe('')
    expect(code).toBe(0)
  }
})
