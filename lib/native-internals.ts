// Internal hooks for tests and benchmarks; not part of the public API.
import { native, Roofline } from './native';

export { setCpuIsa } from './runtime';

/** Measures this machine's fp32 FMA peak (active kernel family) and read bandwidth; takes about a second. */
export function measureRoofline(): Promise<Roofline> {
  return native().measureRoofline();
}
