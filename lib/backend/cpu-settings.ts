// Process-wide CPU settings: the thread pool size and which SIMD kernels run.
import { native } from '../addon/native';
import type { CpuIsa, NativeCpuInfo, QuantActivations } from '../addon/native-surface';
import { callNative } from '../errors';

export type { CpuIsa, QuantActivations };

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

/**
 * Chooses how quantized GGUF weights multiply, for every model and layer of the process (default 'q8', or 'f32' when
 * the environment variable DYNAMOE_QUANT_ACTIVATIONS=f32 is set at startup):
 * - 'q8': Q8_0, Q4_0, MXFP4, Q4_K, Q5_K and Q6_K weights take integer dot products (AVX512-VNNI or AVX2) with each
 *   activation row quantized, from its own values only, to 8-bit blocks as llama.cpp does (Q8_0-style blocks of 32
 *   for Q8_0, Q4_0 and MXFP4; Q8_K-style blocks of 256 for Q4_K, Q5_K and Q6_K). Faster (decode is bound by decoding
 *   weights to f32 otherwise), at the cost of 8-bit activation rounding: logits move about as much as llama.cpp's
 *   do for the same reason (README, quantized GGUF files). Other quantized types keep the f32 path.
 * - 'f32': every quantized type's blocks are decoded to f32 and multiplied with f32 activations, exact to f32
 *   rounding of the dequantized weights.
 * Either way a type takes one path for every row count, so a request's bits do not depend on its batch. Changing it
 * between steps of a session changes the numbers of the steps after.
 */
export function setQuantActivations(mode: QuantActivations): void {
  callNative(() => native().setQuantActivations(mode));
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
