import { type Logger, pino } from 'pino'

/**
 * A pino logger writing JSON lines to stdout through an asynchronous buffer:
 * logging stays off the request path, which is why the drain's last hook must
 * flush it before the process exits.
 *
 * @example
 * ```ts
 * const logger = createLogger('info', 'orders')
 * drain.onShutdown('logger', () => new Promise((resolve) => logger.flush(() => resolve(undefined))))
 * ```
 */
export function createLogger(level: string, service: string): Logger {
  return pino({ level, base: { service, pid: process.pid } }, pino.destination({ dest: 1, sync: false, minLength: 4096 }))
}

/**
 * Writes out everything the logger buffered. pino ends a flush with an fsync,
 * which pipes and terminals refuse (EINVAL, ENOTSUP) after the data was written:
 * those count as flushed, any other error is real.
 *
 * @example
 * ```ts
 * drain.onShutdown('logger', () => flushLogger(logger), { timeout: 1_000 })
 * ```
 */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    logger.flush((error) => {
      const code = (error as NodeJS.ErrnoException | undefined)?.code
      if (error === undefined || error === null || code === 'EINVAL' || code === 'ENOTSUP') resolve()
      else reject(error)
    })
  })
}
