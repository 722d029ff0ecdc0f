// Internal hooks for tests and benchmarks; not part of the public API.
import { native } from '../addon/native';
import type { Roofline } from '../addon/native-surface';

export { setCpuIsa } from './cpu-settings';

/** Measures this machine's fp32 FMA peak (active kernel family) and read bandwidth; takes about a second. */
export function measureRoofline(): Promise<Roofline> {
  return native().measureRoofline();
}
