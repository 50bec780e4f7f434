// Drain benchmark (not a test): the load test of @ballast/drain run against ballast,
// @godaddy/terminus, http-terminator, stoppable and a plain server.close(), in one run.
// 32 keep-alive client loops (node http.Agent) send a mix of fast and 300 ms requests to
// an Express server in a child process, SIGTERM lands mid-load, the loops keep sending.
// Reported per peer: requests sent, 2xx, failures by kind, and time from the signal to
// the exit. ECONNREFUSED on connect after the signal is the only harmless failure.
//
//   node benchmarks/drain-peers.mjs [--runs 3]
//
// Every run is bounded: 15 s after the signal the loops stop and the server is killed.
import { spawn } from 'node:child_process'
import http from 'node:http'
import { fileURLToPath } from 'node:url'

const PEERS = ['ballast', 'terminus', 'http-terminator', 'stoppable', 'server.close()']
const LOOPS = 32
const LOAD_BEFORE_SIGNAL_MS = 500
const BOUND_AFTER_SIGNAL_MS = 15_000
const GRACE_MS = 10_000

async function serve(peer) {
  const { default: express } = await import('express')
  const app = express()
  let drain
  if (peer === 'ballast') {
    const { Drain } = await import('@ballast/drain')
    const { Registry } = await import('prom-client')
    drain = new Drain({ gracePeriod: GRACE_MS, readinessDelay: 0, logger: false, registry: new Registry() })
    app.use(drain.middleware())
  }
  app.get('/fast', (_req, res) => {
    res.json({ ok: true })
  })
  app.get('/slow', (_req, res) => {
    setTimeout(() => res.json({ ok: true }), 300)
  })
  let server = http.createServer(app)
  if (peer === 'ballast') {
    drain.attach(server)
  } else if (peer === 'terminus') {
    const { createTerminus } = await import('@godaddy/terminus')
    createTerminus(server, { signals: ['SIGTERM'], timeout: GRACE_MS, useExit0: true, logger: () => {} })
  } else if (peer === 'http-terminator') {
    const { createHttpTerminator } = await import('http-terminator')
    const terminator = createHttpTerminator({ server, gracefulTerminationTimeout: GRACE_MS })
    process.once('SIGTERM', () => {
      terminator.terminate().then(
        () => process.exit(0),
        () => process.exit(1),
      )
    })
  } else if (peer === 'stoppable') {
    const { default: stoppable } = await import('stoppable')
    server = stoppable(server, GRACE_MS)
    process.once('SIGTERM', () => server.stop(() => process.exit(0)))
  } else {
    process.once('SIGTERM', () => server.close(() => process.exit(0)))
  }
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`))
}

function kindOf(error) {
  if (typeof error?.code === 'string') return error.code
  if (/socket hang up/i.test(String(error?.message))) return 'socket hang up'
  return String(error?.message ?? error)
}

async function measure(peer) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', peer], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })))
  const port = await new Promise((resolve, reject) => {
    child.stdout.once('data', (chunk) => resolve(JSON.parse(String(chunk)).port))
    child.once('exit', () => reject(new Error(`${peer} server exited before listening`)))
  })
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOOPS })
  const result = { peer, sent: 0, ok: 0, refused: 0, failures: {}, exitMs: undefined, exit: undefined }
  let signalAt
  let killed = false
  let stop = false
  const once = (path) =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, agent }, (res) => {
        res.resume()
        res.once('end', () => resolve(res.statusCode))
        res.once('error', reject)
      })
      req.once('error', reject)
      req.end()
    })
  const loop = async () => {
    while (!stop) {
      result.sent++
      try {
        const status = await once(Math.random() < 0.2 ? '/slow' : '/fast')
        if (status >= 200 && status < 300) result.ok++
        else result.failures[`HTTP ${status}`] = (result.failures[`HTTP ${status}`] ?? 0) + 1
      } catch (error) {
        const kind = kindOf(error)
        if (killed) {
          // Reset by the SIGKILL that ends a run at its bound: not the peer's doing.
          result.afterKill = (result.afterKill ?? 0) + 1
          return
        }
        if (kind === 'ECONNREFUSED' && signalAt !== undefined) {
          result.refused++
          return
        }
        result.failures[kind] = (result.failures[kind] ?? 0) + 1
      }
    }
  }
  const loops = Array.from({ length: LOOPS }, loop)
  await new Promise((resolve) => setTimeout(resolve, LOAD_BEFORE_SIGNAL_MS))
  signalAt = performance.now()
  child.kill('SIGTERM')
  const bound = new Promise((resolve) => setTimeout(resolve, BOUND_AFTER_SIGNAL_MS, 'bound'))
  const first = await Promise.race([exited, bound])
  if (first === 'bound') {
    result.exit = `still running after ${BOUND_AFTER_SIGNAL_MS / 1000} s (killed)`
    killed = true
    child.kill('SIGKILL')
    await exited
  } else {
    result.exitMs = Math.round(first.at - signalAt)
    result.exit = first.signal ?? first.code
  }
  // Loops still going against a dead server end on their next refusal.
  stop = true
  await Promise.all(loops)
  agent.destroy()
  return result
}

async function main() {
  const runsIndex = process.argv.indexOf('--runs')
  const runs = runsIndex > 0 ? Number(process.argv[runsIndex + 1]) : 3
  const rows = []
  for (const peer of PEERS) {
    for (let run = 0; run < runs; run++) {
      const result = await measure(peer)
      console.error(JSON.stringify(result))
      rows.push(result)
    }
  }
  console.log(
    `\n${LOOPS} keep-alive loops, 20 % of requests 300 ms, SIGTERM after ${LOAD_BEFORE_SIGNAL_MS} ms; ${runs} runs per peer (median exit time, failures summed)\n`,
  )
  console.log(
    '| peer | requests sent | 2xx | ECONNREFUSED after signal (harmless) | ECONNRESET | EPIPE | socket hang up | other failures | signal → exit (median) | exit | cut by the bound SIGKILL |',
  )
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|')
  for (const peer of PEERS) {
    const mine = rows.filter((row) => row.peer === peer)
    const sum = (pick) => mine.reduce((total, row) => total + pick(row), 0)
    const failures = {}
    for (const row of mine) for (const [kind, n] of Object.entries(row.failures)) failures[kind] = (failures[kind] ?? 0) + n
    const { ECONNRESET = 0, EPIPE = 0, 'socket hang up': hangUp = 0, ...other } = failures
    const otherText =
      Object.entries(other)
        .map(([kind, n]) => `${kind}: ${n}`)
        .join(', ') || '0'
    const times = mine
      .map((row) => row.exitMs)
      .filter((ms) => ms !== undefined)
      .sort((a, b) => a - b)
    const median =
      times.length === mine.length
        ? `${times[Math.floor(times.length / 2)]} ms`
        : `no exit in ${mine.length - times.length}/${mine.length} runs`
    const exits = [...new Set(mine.map((row) => String(row.exit)))].join(', ')
    console.log(
      `| ${peer} | ${sum((row) => row.sent)} | ${sum((row) => row.ok)} | ${sum((row) => row.refused)} | ${ECONNRESET} | ${EPIPE} | ${hangUp} | ${otherText} | ${median} | ${exits} | ${sum((row) => row.afterKill ?? 0)} |`,
    )
  }
}

const serveIndex = process.argv.indexOf('--serve')
if (serveIndex > 0) void serve(process.argv[serveIndex + 1])
else void main()
