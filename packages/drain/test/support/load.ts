import http from 'node:http'
import { Agent, request as undiciRequest } from 'undici'

/** Which client library the loops use. */
export type ClientKind = 'http' | 'undici'

/** Failure counts by kind, and totals, of a load run. */
export interface LoadResult {
  sent: number
  ok: number
  /** Responses received after the signal that carried `Connection: close`. */
  closeAnnounced: number
  /**
   * 2xx responses by the phase the server marked them with when their headers went out
   * (`x-drain-phase`: serving, draining, closing, closed), and by whether they said
   * `Connection: close` (`draining/close`, `draining/keep-alive` …).
   */
  phases: Record<string, number>
  /** 2xx responses marked `draining` or `closed` (which must announce `Connection: close`) that did not. */
  unannounced: number
  /** `ECONNREFUSED` on connect after the signal: the only acceptable failure. */
  refusedAfterSignal: number
  /** Every other failure, by code (`ECONNRESET`, `EPIPE`, `socket hang up`, `ECONNREFUSED before signal`, `status 5xx` …). */
  failures: Record<string, number>
  /** Loops that hit the request or time bound instead of stopping on a refusal. */
  bounded: number
  /** ms from the signal to the first refusal, and to the last 2xx. */
  firstRefusedAfterMs: number | undefined
  lastOkAfterMs: number | undefined
  /** The first few failures: kind, ms from the signal when the request started and when it failed. */
  failureLog: [string, number, number][]
}

export interface LoadOptions {
  port: number
  kind: ClientKind
  loops: number
  /** Fraction of requests that take 300 ms. */
  slowShare?: number
  /** Per-loop bound on requests. */
  maxRequestsPerLoop: number
  /** Bound on the whole run, ms. */
  maxDurationMs: number
  /** `performance.now()` of the signal, once sent (read lazily). */
  signalAt: () => number | undefined
  /** Path of each request; default a mix of /fast and /slow. */
  path?: (loop: number, index: number) => { method: 'GET' | 'POST'; path: string }
  /** The object to count into (from {@link emptyLoadResult}), to watch the run while it goes. */
  result?: LoadResult
}

/**
 * Waits until the load ran at least `minMs` and got at least `minOk` 2xx (a loaded
 * machine, or Node 22, may need longer for the latter), but no longer than `maxMs`.
 */
export async function loadWarmedUp(
  live: LoadResult,
  { minMs, minOk, maxMs }: { minMs: number; minOk: number; maxMs: number },
): Promise<void> {
  const start = performance.now()
  for (;;) {
    const elapsed = performance.now() - start
    if (elapsed >= maxMs || (elapsed >= minMs && live.ok >= minOk)) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** A result with nothing counted yet. */
export function emptyLoadResult(): LoadResult {
  return {
    sent: 0,
    ok: 0,
    closeAnnounced: 0,
    phases: {},
    unannounced: 0,
    refusedAfterSignal: 0,
    failures: {},
    bounded: 0,
    firstRefusedAfterMs: undefined,
    lastOkAfterMs: undefined,
    failureLog: [],
  }
}

function failureKind(error: unknown): string {
  const seen = new Set<unknown>()
  let current: unknown = error
  while (current !== undefined && current !== null && !seen.has(current)) {
    seen.add(current)
    const { code, message } = current as { code?: unknown; message?: unknown }
    if (typeof code === 'string' && code !== 'UND_ERR_SOCKET') return code
    if (typeof message === 'string' && /socket hang up/i.test(message)) return 'socket hang up'
    current = (current as { cause?: unknown }).cause
  }
  const { code, message } = error as { code?: unknown; message?: unknown }
  return String(code ?? message ?? error)
}

/**
 * Runs keep-alive client loops until each one is refused (the listener closed) or
 * hits a bound. Every request and every failure is classified.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const result = options.result ?? emptyLoadResult()
  const started = performance.now()
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: options.loops })
  const undiciAgent = new Agent({ connections: options.loops, keepAliveTimeout: 60_000 })
  const slowShare = options.slowShare ?? 0.2
  const pick =
    options.path ?? ((_loop: number, _index: number) => ({ method: 'GET' as const, path: Math.random() < slowShare ? '/slow' : '/fast' }))

  const once = async (loop: number, index: number): Promise<{ status: number; close: boolean; phase: unknown }> => {
    const { method, path } = pick(loop, index)
    if (options.kind === 'undici') {
      const response = await undiciRequest(`http://127.0.0.1:${options.port}${path}`, { method, dispatcher: undiciAgent })
      await response.body.text()
      return { status: response.statusCode, close: response.headers.connection === 'close', phase: response.headers['x-drain-phase'] }
    }
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: options.port, path, method, agent: httpAgent }, (res) => {
        res.resume()
        res.once('end', () =>
          resolve({ status: res.statusCode ?? 0, close: res.headers.connection === 'close', phase: res.headers['x-drain-phase'] }),
        )
        res.once('error', reject)
      })
      req.once('error', reject)
      req.end()
    })
  }

  const loop = async (id: number) => {
    for (let index = 0; index < options.maxRequestsPerLoop; index++) {
      if (performance.now() - started > options.maxDurationMs) break
      result.sent++
      const requestStart = performance.now()
      try {
        const { status, close, phase } = await once(id, index)
        if (status >= 200 && status < 300) {
          result.ok++
          if (typeof phase === 'string') {
            const key = `${phase}/${close ? 'close' : 'keep-alive'}`
            result.phases[key] = (result.phases[key] ?? 0) + 1
            if ((phase === 'draining' || phase === 'closed') && !close) result.unannounced++
          }
          const at = options.signalAt()
          if (at !== undefined) result.lastOkAfterMs = Math.round(performance.now() - at)
        } else result.failures[`status ${status}`] = (result.failures[`status ${status}`] ?? 0) + 1
        const signalAt = options.signalAt()
        if (close && signalAt !== undefined) result.closeAnnounced++
      } catch (error) {
        const kind = failureKind(error)
        const signalAt = options.signalAt()
        if (kind === 'ECONNREFUSED' && signalAt !== undefined) {
          result.refusedAfterSignal++
          result.firstRefusedAfterMs ??= Math.round(performance.now() - signalAt)
          // The server is gone: this loop is done.
          return
        }
        const label = kind === 'ECONNREFUSED' ? 'ECONNREFUSED before signal' : kind
        result.failures[label] = (result.failures[label] ?? 0) + 1
        if (result.failureLog.length < 20) {
          const base = signalAt ?? Number.NaN
          result.failureLog.push([label, Math.round(requestStart - base), Math.round(performance.now() - base)])
        }
        // Keep going: the next request tells whether the server still answers.
      }
    }
    result.bounded++
  }
  try {
    await Promise.all(Array.from({ length: options.loops }, (_, id) => loop(id)))
  } finally {
    httpAgent.destroy()
    await undiciAgent.close()
  }
  return result
}
