// Process-wide CPU settings: the thread pool size and which SIMD kernels run.
import { native } from '../addon/native';
import type { CpuIsa, NativeCpuInfo } from '../addon/native-surface';
import { callNative } from '../errors';

export type { CpuIsa };

/** CPU backend facts: the SIMD kernel family in use, the ones this CPU supports, and the pool size. */
export type CpuInfo = NativeCpuInfo;

/**
 * Chooses the CPU kernel family for every layer and model of the process (default: the best of 'avx512', 'avx2',
 * 'scalar' this CPU runs). 'avx512bf16' (CPUs with AVX512_BF16) multiplies bf16 weights with bf16 dot products
 * and rounds the activations of those GEMMs to bf16 (as llama.cpp and oneDNN do), where the other families keep
 * them in f32. It is faster only where the CPU's dot products outrun its fp32 FMAs (compare the roofline's
 * bf16DotGflops and fmaGflops): on a Sapphire Rapids host they ran at half the FMA rate, and 'avx512' was 1.4-1.8x
 * faster in prefill. f32 and f16 weights run as on 'avx512'.
 * Throws ERR_DYNAMOE_TYPE when this CPU (or build) cannot run the family.
 */
export function setCpuIsa(isa: CpuIsa): void {
  callNative(() => native().setCpuIsa(isa));
}

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
