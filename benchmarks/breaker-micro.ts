// Cost of one call through @ballast/breaker (with its metrics) against raw opossum
// `fire` (default options), opossum + opossum-prometheus, and cockatiel, all
// measured in the same run; then the heap each retains after 1,000,000 calls.
//
//   node --experimental-strip-types --expose-gc benchmarks/breaker-micro.ts
//
// Bounded: per subject three fresh processes of 6 × 50,000 calls, then one fresh
// process per subject for the memory run (1,000,000 calls each); ~40 s in all. Work is an already
// resolved promise, so what is measured is the wrapper, not the work.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { Breaker } from '@ballast/breaker'
import { Deadline } from '@ballast/deadline'
import { ConsecutiveBreaker, circuitBreaker, handleAll } from 'cockatiel'
import { Registry } from 'prom-client'

const require = createRequire(import.meta.url)
type Fire = { fire(): Promise<unknown>; shutdown(): void }
const CircuitBreaker = require('opossum') as new (action: () => Promise<number>, options?: object) => Fire
const PrometheusMetrics = require('opossum-prometheus') as new (options: object) => { clear(): void }

const work = () => Promise.resolve(1)

interface Instance {
  call(): Promise<unknown>
  dispose(): void
  /** Runs the timed loop inside this scope (a deadline), so it is not re-entered per call. */
  scope?<T>(fn: () => T): T
}

interface Subject {
  name: string
  make(): Instance
}

const subjects: Subject[] = [
  {
    name: 'opossum fire (defaults)',
    make() {
      const circuit = new CircuitBreaker(work)
      return { call: () => circuit.fire(), dispose: () => circuit.shutdown() }
    },
  },
  {
    name: 'opossum + opossum-prometheus',
    make() {
      const circuit = new CircuitBreaker(work)
      const metrics = new PrometheusMetrics({ circuits: [circuit], registry: new Registry() })
      return {
        call: () => circuit.fire(),
        dispose: () => {
          metrics.clear()
          circuit.shutdown()
        },
      }
    },
  },
  {
    name: 'opossum, ballast settings',
    make() {
      const circuit = new CircuitBreaker(work, { timeout: false, rollingPercentilesEnabled: false, enableSnapshots: false })
      return { call: () => circuit.fire(), dispose: () => circuit.shutdown() }
    },
  },
  {
    name: 'cockatiel circuitBreaker',
    make() {
      const policy = circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) })
      return { call: () => policy.execute(work), dispose: () => undefined }
    },
  },
  {
    name: 'ballast Breaker (defaults, metrics)',
    make() {
      const breaker = new Breaker({ name: 'bench', registry: new Registry() })
      return { call: () => breaker.execute(work), dispose: () => breaker[Symbol.dispose]() }
    },
  },
  {
    name: 'ballast Breaker, work reads signal',
    make() {
      const breaker = new Breaker({ name: 'bench', registry: new Registry() })
      const reading = ({ signal }: { signal: AbortSignal }) => Promise.resolve(signal.aborted ? 0 : 1)
      return { call: () => breaker.execute(reading), dispose: () => breaker[Symbol.dispose]() }
    },
  },
  {
    name: 'ballast Breaker, under a Deadline',
    make() {
      const breaker = new Breaker({ name: 'bench', registry: new Registry() })
      const deadline = Deadline.after(600_000)
      return {
        call: () => breaker.execute(work),
        scope: (fn) => deadline.run(fn),
        dispose: () => {
          breaker[Symbol.dispose]()
          deadline[Symbol.dispose]()
        },
      }
    },
  },
]

async function timeRound(subject: Instance, calls: number): Promise<number> {
  const loop = async () => {
    const started = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) await subject.call()
    return Number(process.hrtime.bigint() - started) / calls
  }
  return subject.scope === undefined ? loop() : subject.scope(loop)
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

// Each subject runs in its own fresh process (opossum's latency arrays would
// otherwise put GC pauses into the other subjects' rounds); the processes run
// in three passes (forward, backward, forward) and the best is kept, so machine
// drift and other load on the machine hit every subject alike.
async function speedChild(name: string): Promise<void> {
  const subject = subjects.find((s) => s.name === name)
  if (subject === undefined) throw new Error(`no subject ${name}`)
  const instance = subject.make()
  await timeRound(instance, 50_000) // warm-up
  const samples: number[] = []
  for (let round = 0; round < 5; round++) samples.push(await timeRound(instance, 50_000))
  instance.dispose()
  process.stdout.write(JSON.stringify({ ns: median(samples) }))
}

function child(mode: '--speed' | '--memory', name: string): number {
  const result = spawnSync(
    process.execPath,
    ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--expose-gc', import.meta.filename, mode, name],
    { encoding: 'utf8', timeout: 60_000 },
  )
  if (result.status !== 0) throw new Error(`${mode} ${name} failed: ${result.stderr}`)
  const parsed = JSON.parse(result.stdout) as { ns?: number; retained?: number }
  return (parsed.ns ?? parsed.retained) as number
}

function speed(): Map<string, number> {
  const samples = new Map<string, number[]>(subjects.map((s) => [s.name, []]))
  const order = [...subjects, ...[...subjects].reverse(), ...subjects]
  for (const subject of order) samples.get(subject.name)?.push(child('--speed', subject.name))
  return new Map([...samples].map(([name, values]) => [name, Math.min(...values)]))
}

async function memoryChild(name: string): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with --expose-gc')
  const subject = subjects.find((s) => s.name === name)
  if (subject === undefined) throw new Error(`no subject ${name}`)
  gc()
  gc()
  const before = process.memoryUsage().heapUsed
  const instance = subject.make()
  for (let i = 0; i < 1_000_000; i++) await instance.call()
  gc()
  gc()
  // Retained while the subject is alive (calls still in a rolling window).
  const after = process.memoryUsage().heapUsed
  process.stdout.write(JSON.stringify({ retained: after - before }))
  instance.dispose()
}

const memorySubjects = [
  'opossum fire (defaults)',
  'opossum, ballast settings',
  'cockatiel circuitBreaker',
  'ballast Breaker (defaults, metrics)',
]

async function main(): Promise<void> {
  const memoryFlag = process.argv.indexOf('--memory')
  if (memoryFlag !== -1) {
    await memoryChild(process.argv[memoryFlag + 1] as string)
    return
  }
  const speedFlag = process.argv.indexOf('--speed')
  if (speedFlag !== -1) {
    await speedChild(process.argv[speedFlag + 1] as string)
    return
  }
  const started = Date.now()
  const ns = speed()
  const baseline = ns.get('opossum fire (defaults)') as number
  console.log(
    `ns per call: fresh process per subject, median of 5 rounds of 50,000 sequential awaited calls after a warm-up, best of 3 passes; node ${process.version}`,
  )
  console.log('| subject | ns/call | vs opossum fire |')
  console.log('|---|---:|---:|')
  for (const [name, value] of ns) console.log(`| ${name} | ${value.toFixed(0)} | ${(value / baseline).toFixed(2)}x |`)

  console.log('\nheap retained after 1,000,000 calls (subject alive, fresh process each, after gc)')
  console.log('| subject | retained MB |')
  console.log('|---|---:|')
  const retained = new Map<string, number>()
  for (const name of memorySubjects) {
    const bytes = child('--memory', name)
    retained.set(name, bytes)
    console.log(`| ${name} | ${(bytes / 2 ** 20).toFixed(2)} |`)
  }
  const ballast = retained.get('ballast Breaker (defaults, metrics)') as number
  const sameSettings = retained.get('opossum, ballast settings') as number
  const defaults = retained.get('opossum fire (defaults)') as number
  console.log(
    `\nballast minus opossum with the same settings: ${((ballast - sameSettings) / 2 ** 20).toFixed(2)} MB; ` +
      `ballast minus opossum defaults: ${((ballast - defaults) / 2 ** 20).toFixed(2)} MB`,
  )
  console.log(`total ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

await main()
