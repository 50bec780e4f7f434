// Prints one plain closing line, `tests: N passed, N failed, N skipped`, after
// vitest's own report, so any log reader (CI included) can count the run
// without parsing vitest's formatted summary. Failed modules (a file that
// could not load) and unhandled errors count as failures.
export default class SummaryReporter {
  onTestRunEnd(testModules, unhandledErrors) {
    let passed = 0
    let failed = unhandledErrors.length
    let skipped = 0
    for (const testModule of testModules) {
      if (testModule.state() === 'failed' && testModule.children.size === 0) failed++
      for (const test of testModule.children.allTests()) {
        const state = test.result().state
        if (state === 'passed') passed++
        else if (state === 'failed') failed++
        else skipped++
      }
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`)
  }
}
