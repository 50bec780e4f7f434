import { BallastError, metricsTarget, routeLabel } from '@ballast/core'
import { Registry } from 'prom-client'

const error = new BallastError('x', { code: 'BALLAST_X', status: 503 })
const target = metricsTarget('consumer', { registry: new Registry() })
process.stdout.write(
  JSON.stringify({ instance: error instanceof Error, status: error.status, prefix: target.prefix, route: routeLabel({}) }),
)
