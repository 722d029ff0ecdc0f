// Devices: what the CUDA backend found (backendInfo) and how a `device` option resolves to 'cpu' or 'cuda'.
import { DynamoeError } from './errors';
import { native } from './native';
import { cpuInfo, CpuInfo } from './runtime';
import { describe } from './validate';

/** Where a layer's weights live and its kernels run. `'auto'` is `'cuda'` when {@link backendInfo} says so. */
export type Device = 'cpu' | 'cuda' | 'auto';

/** The GPU the CUDA backend runs on (device 0). */
export interface GpuInfo {
  name: string;
  /** e.g. '9.0' for Hopper. */
  computeCapability: string;
  multiprocessors: number;
  memoryBytes: number;
}

/** What this dynamoe binary can run on here. */
export interface BackendInfo {
  /** The backend `device: 'auto'` picks: 'cuda' when this binary has CUDA kernels and a usable GPU and driver. */
  backend: 'cpu' | 'cuda';
  /** Whether this binary contains the CUDA kernels (`npm run build:cuda`). */
  cudaBuilt: boolean;
  /**
   * Why CUDA is not used: a CUDA error name (`'cudaErrorInsufficientDriver'`: no NVIDIA driver,
   * `'cudaErrorNoDevice'`: no GPU, `'cudaErrorNoKernelImageForDevice'`: a GPU this binary has no code for) or
   * `'notBuilt'` (a CPU-only binary).
   */
  cudaError?: string;
  cudaErrorMessage?: string;
  /** CUDA runtime version linked into the binary, e.g. 13000. */
  cudaRuntimeVersion?: number;
  /** Highest CUDA version the installed driver supports; 0 without a driver. */
  cudaDriverVersion?: number;
  gpu?: GpuInfo;
  /** Device code in this binary, e.g. ['sm_80', 'sm_90', 'compute_90'] (PTX for newer GPUs); [] for CPU builds. */
  cudaArchitectures: string[];
  cpu: CpuInfo;
}

/** Which backends this binary has and which one `device: 'auto'` uses, with the reason when it is not CUDA. */
export function backendInfo(): BackendInfo {
  return { ...native().backendInfo(), cpu: cpuInfo() };
}

/** Resolves a `device` option (default 'cpu') to the device to run on; 'cuda' is checked by the addon. */
export function resolveDevice(device: unknown): 'cpu' | 'cuda' {
  const value = device ?? 'cpu';
  if (value === 'cpu' || value === 'cuda') return value;
  if (value === 'auto') return native().backendInfo().backend;
  throw new DynamoeError('ERR_DYNAMOE_VALUE', `device must be 'cpu', 'cuda' or 'auto', got ${describe(value)}`);
}
