// Child-process entry of the HTTP benchmarks: builds one app (see apps.ts), listens
// on 127.0.0.1:0, prints its port, and answers the parent over IPC with its CPU
// time, its heap after a full GC, and the cost of rendering its /metrics. The app
// gets a core of its own while autocannon runs in the parent. Exits when the
// parent disconnects.
//
//   node --experimental-strip-types --expose-gc _lib/server-child.ts <kind> '<options json>'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import type { AddressInfo } from 'node:net'
import { type AppKind, type AppOptions, buildApp } from './apps.ts'

export type ChildRequest =
  | { type: 'cpu' }
  | { type: 'heap' }
  | { type: 'scrape'; count: number }
  | { type: 'profileStart' }
  | { type: 'profileStop'; file: string }
export type ChildReply = { cpuMicros: number } | { heapUsed: number } | { scrapeMs: number[]; bytes: number; series: number } | { ok: true }

const kind = process.argv[2] as AppKind
const options = JSON.parse(process.argv[3] ?? '{}') as AppOptions
const built = buildApp(kind, options)
built.server.listen(0, '127.0.0.1')
await once(built.server, 'listening')
process.stdout.write(`${JSON.stringify({ port: (built.server.address() as AddressInfo).port, paths: built.paths })}\n`)

const session = new Session()
const gc = (globalThis as { gc?: () => void }).gc
process.on('message', (message: ChildRequest) => {
  void reply(message).then((answer) => process.send?.(answer))
})

async function reply(message: ChildRequest): Promise<ChildReply> {
  if (message.type === 'cpu') {
    const { user, system } = process.cpuUsage()
    return { cpuMicros: user + system }
  }
  if (message.type === 'heap') {
    gc?.()
    gc?.()
    return { heapUsed: process.memoryUsage().heapUsed }
  }
  if (message.type === 'profileStart') {
    // The inspector profiler, started only around the load, so start-up (module
    // loading, type stripping) is not in the profile as it is with --cpu-prof.
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: 200 })
    await session.post('Profiler.start')
    return { ok: true }
  }
  if (message.type === 'profileStop') {
    const { profile } = await session.post('Profiler.stop')
    writeFileSync(message.file, JSON.stringify(profile))
    session.disconnect()
    return { ok: true }
  }
  const scrapeMs: number[] = []
  let text = ''
  for (let i = 0; i < message.count; i++) {
    const started = performance.now()
    text = await built.registry.metrics()
    scrapeMs.push(performance.now() - started)
  }
  const series = text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length
  return { scrapeMs, bytes: Buffer.byteLength(text), series }
}

process.on('disconnect', () => {
  built.dispose()
  built.server.closeAllConnections()
  built.server.close()
  setTimeout(() => process.exit(0), 50).unref()
})
