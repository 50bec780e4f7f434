// Cost of one `withDeadline` call against p-timeout, `AbortSignal.timeout` and a
// hand-written AbortController + setTimeout, all measured in the same run, in
// interleaved rounds, on the Node running it.
//
//   node --experimental-strip-types benchmarks/deadline-micro.ts
//
// Bounded: 7 rounds × 7 subjects, each a fresh process (so one subject's garbage,
// such as p-timeout's stack traces, is not collected on another's time) doing a
// 50,000-call warm-up then 200,000 sequential awaited calls (~60 s). The work is an already resolved promise, so what is measured is the
// wrapper: arming and clearing one timer, the signal, the AsyncLocalStorage
// scope, the race. Time is the child's CPU time (user + system, process.cpuUsage),
// not wall time, so other load on a shared machine does not count. Reported:
// median ns per call, and the same minus the bare `await` of the work. `nested` runs inside a request-like deadline, so each call
// is a child of `Deadline.current()`. Target: withDeadline < 1 µs per call.
import { AsyncLocalStorage } from 'node:async_hooks'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Deadline, withDeadline } from '@ballast/deadline'
import pTimeout from 'p-timeout'

const CALLS = 200_000
const WARMUP = 50_000
const ROUNDS = 7
const work = (signal?: AbortSignal): Promise<number> => Promise.resolve(signal === undefined ? 1 : 2)

type Subject = { name: string; call: () => Promise<unknown>; scope?: <T>(fn: () => T) => T }

const request = Deadline.after(3_600_000)
const storage = new AsyncLocalStorage<number>()
const subjects: Subject[] = [
  { name: 'bare await', call: () => work() },
  { name: 'withDeadline (root)', call: () => withDeadline(1_000, work) },
  { name: 'withDeadline (nested)', call: () => withDeadline(1_000, work), scope: (fn) => request.run(fn) },
  { name: 'AsyncLocalStorage.run alone', call: () => storage.run(1, work) },
  { name: 'p-timeout', call: () => pTimeout(work(), { milliseconds: 1_000 }) },
  {
    name: 'AbortSignal.timeout',
    call: () => work(AbortSignal.timeout(1_000)),
  },
  {
    name: 'AbortController + setTimeout',
    call: async () => {
      const controller = new AbortController()
      const timer = setTimeout(() => controller.abort(), 1_000)
      try {
        return await work(controller.signal)
      } finally {
        clearTimeout(timer)
      }
    },
  },
]

async function loop(subject: Subject): Promise<number> {
  const run = async () => {
    for (let i = 0; i < WARMUP; i++) await subject.call()
    const started = process.cpuUsage()
    for (let i = 0; i < CALLS; i++) await subject.call()
    const { user, system } = process.cpuUsage(started)
    return ((user + system) * 1_000) / CALLS
  }
  return subject.scope === undefined ? run() : subject.scope(run)
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

function measure(name: string): number {
  const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), name], { encoding: 'utf8' })
  const ns = Number(child.stdout.trim())
  if (child.status !== 0 || Number.isNaN(ns)) throw new Error(`${name} failed: ${child.stderr}`)
  return ns
}

async function main(): Promise<void> {
  const only = process.argv[2]
  if (only !== undefined) {
    const subject = subjects.find((s) => s.name === only)
    if (subject === undefined) throw new Error(`unknown subject ${only}`)
    process.stdout.write(`${await loop(subject)}\n`)
    request[Symbol.dispose]()
    return
  }
  request[Symbol.dispose]()
  const results = new Map<string, number[]>(subjects.map((s) => [s.name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const subject of subjects) results.get(subject.name)?.push(measure(subject.name))
  }
  const bare = median(results.get('bare await') ?? [])
  console.log(
    `node ${process.version}, ${CALLS.toLocaleString('en')} calls × ${ROUNDS} rounds (fresh process each), median CPU ns per call`,
  )
  console.log('| subject | ns/call | minus bare await | min..max over rounds |')
  console.log('|---|---:|---:|---:|')
  for (const [name, values] of results) {
    const ns = median(values)
    const range = `${Math.min(...values).toFixed(0)}..${Math.max(...values).toFixed(0)}`
    console.log(`| ${name} | ${ns.toFixed(0)} | ${name === 'bare await' ? '—' : (ns - bare).toFixed(0)} | ${range} |`)
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
