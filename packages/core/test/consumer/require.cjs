// A CommonJS application loading the ESM-only package through require(esm).
const { BallastError, metricsTarget, routeLabel } = require('@ballast/core')
const { Registry } = require('prom-client')

const error = new BallastError('x', { code: 'BALLAST_X', status: 503 })
const target = metricsTarget('consumer', { registry: new Registry() })
process.stdout.write(
  JSON.stringify({ instance: error instanceof Error, status: error.status, prefix: target.prefix, route: routeLabel({}) }),
)
