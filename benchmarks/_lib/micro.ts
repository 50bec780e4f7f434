// Micro-benchmark harness: each (subject, round) runs in a fresh process, so one
// subject's garbage (opossum's latency arrays, p-timeout's stack traces) is never
// collected on another's time, and rounds are interleaved with a rotating order so
// drift and neighbours' load hit every subject alike. A round times one batch of
// sequential calls with the monotonic clock (per-call clock reads, as tinybench
// does them, would cost about as much as the ~100 ns calls measured here).
import { spawn } from 'node:child_process'
import { roundOrder, type Summary, summarize } from './stats.ts'

export interface MicroSubject {
  readonly name: string
  /** One call; awaited when it returns a promise-like. */
  readonly make: () => MicroInstance | Promise<MicroInstance>
}

export interface MicroInstance {
  call(): unknown
  /** The timed loop runs inside this (a deadline's scope), entered once, not per call. */
  scope?<T>(fn: () => T): T
  dispose?(): void
  /** The loop does not await: `call` is synchronous. */
  readonly sync?: boolean
}

export interface MicroOptions {
  readonly warmup: number
  readonly calls: number
}

/** Child side: times `calls` calls of `subject` after `warmup`, prints ns per call. */
export async function runMicroChild(subject: MicroSubject, options: MicroOptions): Promise<void> {
  const instance = await subject.make()
  const loop = async (n: number): Promise<number> => {
    const started = process.hrtime.bigint()
    if (instance.sync === true) for (let i = 0; i < n; i++) instance.call()
    else for (let i = 0; i < n; i++) await instance.call()
    return Number(process.hrtime.bigint() - started) / n
  }
  const run = async () => {
    await loop(options.warmup)
    return loop(options.calls)
  }
  const ns = await (instance.scope === undefined ? run() : instance.scope(run))
  instance.dispose?.()
  process.stdout.write(`${JSON.stringify({ ns })}\n`)
}

/** Parent side: `rounds` interleaved rounds over `names`, a fresh process each. */
export async function runMicro(
  file: string,
  names: readonly string[],
  rounds: number,
  childArgs: (name: string) => string[],
  onRound?: (round: number, values: Map<string, number>) => void,
): Promise<Map<string, { samples: number[]; summary: Summary }>> {
  const samples = new Map<string, number[]>(names.map((name) => [name, []]))
  for (let round = 0; round < rounds; round++) {
    const values = new Map<string, number>()
    for (const name of roundOrder(names, round)) {
      const ns = await child(file, childArgs(name))
      samples.get(name)?.push(ns)
      values.set(name, ns)
    }
    onRound?.(round, values)
  }
  return new Map([...samples].map(([name, values]) => [name, { samples: values, summary: summarize(values) }]))
}

function child(file: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--expose-gc', file, ...args],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
        timeout: 120_000,
      },
    )
    let out = ''
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
    })
    proc.once('error', reject)
    proc.once('exit', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`${args.join(' ')} exited with ${code ?? signal}`))
        return
      }
      try {
        resolve((JSON.parse(out.trim().split('\n').at(-1) ?? '') as { ns: number }).ns)
      } catch (error) {
        reject(error)
      }
    })
  })
}
