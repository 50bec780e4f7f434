import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ExitCode } from '../src/exit-codes.js'
import { startChildServer } from './support/child-server.js'
import { emptyLoadResult, loadWarmedUp, runLoad } from './support/load.js'
import { startPostgres, type TestPostgres } from './support/postgres.js'

let database: TestPostgres

beforeAll(async () => {
  database = await startPostgres()
  const client = new pg.Client({ connectionString: database.connectionString })
  await client.connect()
  await client.query('CREATE TABLE hits (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())')
  await client.end()
}, 60_000)

afterAll(async () => {
  await database?.stop()
}, 60_000)

// Every request inserts a row. After SIGTERM under load, the rows are exactly the 2xx
// responses the clients received: nothing was committed for a request whose client
// saw a failure, and no 2xx was sent for a row that does not exist. The pool is ended
// by a shutdown hook, which must run only once no request is in flight.
it('a pg pool closed by a hook: rows = 2xx responses, pool ended after in-flight requests, no pool error', async () => {
  const server = await startChildServer({ readinessDelay: 150, gracePeriod: 10_000, postgres: database.connectionString })
  let signalAt: number | undefined
  const live = emptyLoadResult()
  const load = runLoad({
    result: live,
    port: server.port,
    kind: 'http',
    loops: 32,
    maxRequestsPerLoop: 2_000,
    maxDurationMs: 15_000,
    signalAt: () => signalAt,
    path: (loop, index) => ({ method: 'POST', path: `/insert/${loop}-${index}?ms=${index % 5 === 0 ? 300 : 5}` }),
  })
  await loadWarmedUp(live, { minMs: 500, minOk: 150, maxMs: 5_000 })
  signalAt = server.kill('SIGTERM')
  const [result, exit] = await Promise.all([load, server.exited])

  const client = new pg.Client({ connectionString: database.connectionString })
  await client.connect()
  const { rows } = await client.query<{ count: string }>('SELECT count(*) AS count FROM hits')
  await client.end()
  const poolEnd = server.events.find((event) => event.event === 'pool-end')
  const poolEnded = server.events.find((event) => event.event === 'pool-ended')
  console.info('[drain postgres]', JSON.stringify({ ...result, rows: rows[0]?.count, poolEnd, poolEnded, exit: exit.code }))

  expect(result.failures).toEqual({})
  expect(result.ok).toBeGreaterThan(100)
  expect(Number(rows[0]?.count)).toBe(result.ok)
  expect(poolEnd?.inflight).toBe(0)
  expect(poolEnded?.poolErrors).toBe(0)
  expect(exit.code).toBe(ExitCode.OK)
  expect(server.stderr()).toBe('')
})
