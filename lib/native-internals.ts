// Internal hooks for tests and benchmarks; not part of the public API.
import { callNative } from './errors';
import { native } from './native';

/** Forces a SIMD kernel family ('scalar' | 'avx2' | 'avx512'); throws if this CPU cannot run it. */
export function setCpuIsa(isa: string): void {
  callNative(() => native().setCpuIsa(isa));
}
