/** The few series of the orders service's exposition the live view shows. */
export interface ServiceView {
  readonly reachable: boolean
  /** closed | open | half_open | disabled | ? */
  readonly breaker: string
  readonly fallbacks: number
  readonly deadlineExceeded: number
  readonly inflight: number
  readonly drainState: string
  readonly transitions: Readonly<Record<string, number>>
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/

/** Parses a Prometheus text exposition into name, labels and value per sample. */
export function parseExposition(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const samples = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = SAMPLE.exec(line)
    if (match === null) continue
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[pair[1] as string] = pair[2] as string
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) })
  }
  return samples
}

/** Reads the orders service's /metrics into a {@link ServiceView}; the last good view when it is gone. */
export class MetricsReader {
  readonly #url: string
  #last: ServiceView = {
    reachable: false,
    breaker: '?',
    fallbacks: 0,
    deadlineExceeded: 0,
    inflight: 0,
    drainState: '?',
    transitions: {},
  }

  constructor(url: string) {
    this.#url = url
  }

  get last(): ServiceView {
    return this.#last
  }

  async read(): Promise<ServiceView> {
    let text: string
    try {
      const response = await fetch(this.#url, { signal: AbortSignal.timeout(800) })
      text = await response.text()
    } catch {
      this.#last = { ...this.#last, reachable: false }
      return this.#last
    }
    let breaker = '?'
    let fallbacks = 0
    let deadlineExceeded = 0
    let inflight = 0
    let drainState = 'stopped'
    const transitions: Record<string, number> = {}
    for (const { name, labels, value } of parseExposition(text)) {
      if (name === 'ballast_breaker_state' && labels.breaker === 'inventory' && value === 1) breaker = labels.state ?? '?'
      else if (name === 'ballast_fetch_requests_total' && labels.client === 'inventory' && labels.status_class === 'fallback')
        fallbacks += value
      else if (name === 'ballast_deadline_exceeded_total') deadlineExceeded += value
      else if (name === 'ballast_drain_inflight_requests') inflight = value
      else if (name === 'ballast_drain_state' && value === 1) drainState = labels.state ?? '?'
      else if (name === 'ballast_breaker_transitions_total' && labels.breaker === 'inventory' && labels.state !== undefined) {
        transitions[labels.state] = value
      }
    }
    this.#last = { reachable: true, breaker, fallbacks, deadlineExceeded, inflight, drainState, transitions }
    return this.#last
  }
}
