// Process-wide CPU settings: the thread pool size and which SIMD kernels run.
import { callNative } from './errors';
import { native, NativeCpuInfo } from './native';

/** CPU backend facts: the SIMD kernel family in use, the ones this CPU supports, and the pool size. */
export type CpuInfo = NativeCpuInfo;

/** Sets the number of threads the CPU kernels use (default: the machine's cores). */
export function setThreads(threads: number): void {
  callNative(() => native().setThreads(threads));
}

/** The number of threads the CPU kernels use. */
export function getThreads(): number {
  return native().getThreads();
}

/** Which SIMD kernels run, what the CPU supports, and the thread count. */
export function cpuInfo(): CpuInfo {
  return native().cpuInfo();
}
