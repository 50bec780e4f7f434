import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Gauge, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { addCollector, gauge, metricsTarget } from './metrics.js'
import { metricsHandler } from './metrics-handler.js'

describe('gauge()/safeCollect with an async collect', () => {
  it('serves the value an async collect sets, as prom-client does on its own', async () => {
    const plain = new Registry()
    new Gauge({
      name: 'plain_g',
      help: 'h',
      registers: [plain],
      async collect() {
        await Promise.resolve()
        this.set(7)
      },
    })
    expect(await plain.metrics()).toContain('plain_g 7')

    const registry = new Registry()
    gauge(metricsTarget('T', { registry, prefix: '' }), {
      name: 'wrapped_g',
      help: 'h',
      labelNames: [],
      async collect() {
        await Promise.resolve()
        this.set(7)
      },
    })
    expect(await registry.metrics()).toContain('wrapped_g 7')
  })

  it('a rejecting async collect neither fails the scrape nor escapes as an unhandled rejection', async () => {
    const escaped: unknown[] = []
    const listener = (reason: unknown) => escaped.push(reason)
    process.on('unhandledRejection', listener)
    try {
      const registry = new Registry()
      gauge(metricsTarget('T', { registry, prefix: '' }), {
        name: 'failing_g',
        help: 'h',
        labelNames: [],
        async collect() {
          throw new Error('collect failed')
        },
      })
      await registry.metrics()
      await new Promise((resolve) => setTimeout(resolve, 20))
      expect(escaped).toEqual([])
    } finally {
      process.off('unhandledRejection', listener)
    }
  })

  it('addCollector keeps the collect callback the gauge was created with', async () => {
    const registry = new Registry()
    const g = gauge(metricsTarget('T', { registry, prefix: '' }), {
      name: 'mixed_g',
      help: 'h',
      labelNames: ['k'],
      collect() {
        this.set({ k: 'spec' }, 1)
      },
    })
    addCollector(g, () => g.set({ k: 'added' }, 2))
    const text = await registry.metrics()
    expect(text).toContain('mixed_g{k="added"} 2')
    expect(text).toContain('mixed_g{k="spec"} 1')
  })
})

describe('metricsHandler with a collect that throws a non-Error', () => {
  it('answers 500 even when the thrown value cannot be converted to a string', async () => {
    const registry = new Registry()
    new Gauge({
      name: 'bad_g',
      help: 'h',
      registers: [registry],
      collect() {
        throw Object.create(null)
      },
    })
    const handler = metricsHandler(registry)
    const escaped: unknown[] = []
    const listener = (reason: unknown) => escaped.push(reason)
    process.on('unhandledRejection', listener)
    const server = http.createServer((req, res) => void handler(req, res)).listen(0, '127.0.0.1')
    try {
      await new Promise((resolve) => server.once('listening', resolve))
      const { port } = server.address() as AddressInfo
      const status = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(1_000) }).then(
        (res) => res.status,
        (error: Error) => `no answer (${error.name})`,
      )
      expect({ status, escaped: escaped.map(String) }).toEqual({ status: 500, escaped: [] })
    } finally {
      process.off('unhandledRejection', listener)
      server.closeAllConnections()
      server.close()
    }
  })
})
