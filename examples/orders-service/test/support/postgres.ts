import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from '../../src/demo/processes.js'

const run = promisify(execFile)

/** Where Debian's `postgresql` package puts the server binaries. */
export const POSTGRES_BIN = process.env.BALLAST_POSTGRES_BIN ?? '/usr/lib/postgresql/15/bin'

/** A throwaway PostgreSQL cluster on 127.0.0.1. */
export interface TestPostgres {
  readonly connectionString: string
  stop(): Promise<void>
}

/**
 * Starts PostgreSQL in a temporary directory on a free 127.0.0.1 port (trust
 * auth, no fsync). initdb refuses root, so as root the binaries run as the
 * `postgres` user, owner of the directory. Missing binaries fail the test.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const initdb = join(POSTGRES_BIN, 'initdb')
  const pgCtl = join(POSTGRES_BIN, 'pg_ctl')
  if (!existsSync(initdb) || !existsSync(pgCtl)) {
    throw new Error(
      `PostgreSQL server binaries not found in ${POSTGRES_BIN}: install the Debian package "postgresql" (scripts/system-deps.sh)`,
    )
  }
  const asRoot = process.getuid?.() === 0
  const exec = (binary: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', binary, ...args], { timeout: 60_000 }) : run(binary, args, { timeout: 60_000 })
  const dir = await mkdtemp(join(tmpdir(), 'ballast-orders-pg-'))
  const data = join(dir, 'data')
  try {
    if (asRoot) {
      const { stdout: uid } = await run('id', ['-u', 'postgres'])
      const { stdout: gid } = await run('id', ['-g', 'postgres'])
      await chown(dir, Number(uid.trim()), Number(gid.trim()))
    }
    await exec(initdb, ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'])
    const port = await freePort()
    await exec(pgCtl, ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '30', '-o', `-h 127.0.0.1 -p ${port} -k ${dir} -F`, 'start'])
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
