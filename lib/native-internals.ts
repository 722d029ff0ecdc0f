// Internal hooks for tests and benchmarks; not part of the public API.
import { callNative } from './errors';
import { native, Roofline } from './native';

/** Forces a SIMD kernel family ('scalar' | 'avx2' | 'avx512'); throws if this CPU cannot run it. */
export function setCpuIsa(isa: string): void {
  callNative(() => native().setCpuIsa(isa));
}

/** Measures this machine's fp32 FMA peak (active kernel family) and read bandwidth; takes about a second. */
export function measureRoofline(): Promise<Roofline> {
  return native().measureRoofline();
}
