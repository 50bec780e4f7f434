import { BallastError, type MetricsOptions, metricsHandler, numberOption } from '@ballast/core'
import { Registry } from 'prom-client'

class QuotaError extends BallastError {
  constructor() {
    super('quota', { code: 'BALLAST_QUOTA', status: 429 })
  }
}

const options: MetricsOptions = { registry: new Registry(), prefix: 'app_' }
const timeout: number = numberOption('Consumer', 'timeout', 5, 10, { min: 0 })
const handler = metricsHandler(options.registry)
const code: string = new QuotaError().code
// @ts-expect-error status is read-only
new QuotaError().status = 500

export { code, handler, timeout }
