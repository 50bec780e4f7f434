import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Where Debian's `postgresql` package puts the server binaries. */
export const POSTGRES_BIN = process.env.BALLAST_POSTGRES_BIN ?? '/usr/lib/postgresql/15/bin'

/** A throwaway PostgreSQL cluster on 127.0.0.1. */
export interface TestPostgres {
  readonly connectionString: string
  /** Stops the server and removes its directory. */
  stop(): Promise<void>
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/**
 * Starts a PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 on a
 * free port, trust authentication, no fsync. `initdb` refuses to run as root, so as
 * root the binaries run as the `postgres` user, which owns the directory.
 * Throws (the test fails, it is not skipped) when the binaries are missing.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const initdb = join(POSTGRES_BIN, 'initdb')
  const pgCtl = join(POSTGRES_BIN, 'pg_ctl')
  if (!existsSync(initdb) || !existsSync(pgCtl)) {
    throw new Error(
      `PostgreSQL server binaries not found in ${POSTGRES_BIN} (initdb, pg_ctl): install the Debian package "postgresql" ` +
        '(or set BALLAST_POSTGRES_BIN to the directory holding them).',
    )
  }
  const asRoot = process.getuid?.() === 0
  const exec = (binary: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', binary, ...args], { timeout: 60_000 }) : run(binary, args, { timeout: 60_000 })

  const dir = await mkdtemp(join(tmpdir(), 'ballast-pg-'))
  const data = join(dir, 'data')
  try {
    if (asRoot) {
      const { stdout } = await run('id', ['-u', 'postgres'])
      const { stdout: gid } = await run('id', ['-g', 'postgres'])
      await chown(dir, Number(stdout.trim()), Number(gid.trim()))
    }
    await exec(initdb, ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'])
    const port = await freePort()
    await exec(pgCtl, [
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-w',
      '-t',
      '30',
      '-o',
      `-h 127.0.0.1 -p ${port} -k ${dir} -F -c max_connections=50`,
      'start',
    ])
    return {
      connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
      async stop() {
        try {
          await exec(pgCtl, ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop'])
        } finally {
          await rm(dir, { recursive: true, force: true })
        }
      },
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}
