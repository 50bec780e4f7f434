/**
 * Holds the CPU for `micros` µs: work of a known size, so a benchmark can show
 * how its harness reports work (over loopback TCP on the benchmark machine, each
 * µs of it shows as more than 1 µs of server CPU per request).
 */
export function busyWait(micros: number): void {
  const end = performance.now() + micros / 1_000
  while (performance.now() < end) {
    // Reading the clock is the work.
  }
}
