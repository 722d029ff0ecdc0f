// The backend a process runs on: which binary loaded and why (backendInfo), and choosing it up front (loadBackend).
import { environmentRequest, isBinaryLoaded, LoadedBinary, loadedBinary, native } from '../addon/native';
import type { GpuInfo } from '../addon/native-surface';
import { Device, parseDevice } from '../device';
import { DynamoeError } from '../errors';
import { cpuInfo, CpuInfo } from './cpu-settings';
import { requireCuda } from './device-placement';

export type { GpuInfo };

/** What this dynamoe binary can run on here. */
export interface BackendInfo {
  /**
   * The backend `device: 'auto'` picks for a MoELayer or route(): 'cuda' when this binary has CUDA kernels and a
   * usable GPU and driver. A whole model (loadModel) goes there too only when `cudaWholeModels` is true.
   */
  backend: 'cpu' | 'cuda';
  /** Whether this binary contains the CUDA kernels (`npm run build:cuda`). */
  cudaBuilt: boolean;
  /** Whether whole models (loadModel) run on the CUDA backend here: the CUDA binary on a usable GPU. */
  cudaWholeModels: boolean;
  /** The GPU's free memory at this call, in bytes (a usable GPU only). */
  cudaFreeMemoryBytes?: number;
  /** The GPU's total memory, in bytes (a usable GPU only). */
  cudaTotalMemoryBytes?: number;
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
  /** Which native binary this process loaded, and why. */
  binary: BinaryInfo;
}

/** The native binary in use: dynamoe ships a CPU binary and a CUDA one (which also has the CPU kernels). */
export interface BinaryInfo {
  /** The .node file loaded. */
  path: string;
  /** 'cuda' for the CUDA-capable binary, 'cpu' for the CPU-only one. */
  kind: 'cpu' | 'cuda';
  /** A prebuilt binary from the package, one compiled on this machine, or the file named by DYNAMOE_ADDON. */
  source: 'prebuild' | 'compiled' | 'DYNAMOE_ADDON';
  /** The device the binary was chosen for. */
  requested: Device;
  /** What asked: `loadBackend()`, `DYNAMOE_DEVICE=...`, or the default ('auto'). */
  requestedBy: string;
  /** Binaries found but passed over (e.g. the CUDA binary on a machine without a GPU), each with why. */
  skipped: Array<{ path: string; kind: 'cpu' | 'cuda'; reason: string }>;
}

function binaryInfo(binary: LoadedBinary): BinaryInfo {
  const { path, kind, source, requested, requestedBy } = binary;
  const skipped = binary.skipped.map((s) => ({ path: s.path, kind: s.kind, reason: s.reason }));
  return { path, kind, source, requested, requestedBy, skipped };
}

/** Which backends this binary has and which one `device: 'auto'` uses, with the reason when it is not CUDA. */
export function backendInfo(): BackendInfo {
  const info = native().backendInfo();
  return { ...info, cudaWholeModels: info.cudaWholeModels === true, cpu: cpuInfo(), binary: binaryInfo(loadedBinary()) };
}

/**
 * Loads the native binary for `device` now and describes it: 'cuda' and 'auto' try the CUDA binary and keep it
 * only when it finds a usable GPU and driver ('cuda' throws ERR_DYNAMOE_DEVICE saying why otherwise; 'auto' falls
 * back to the CPU binary); 'cpu' never loads the CUDA binary. Default: `DYNAMOE_DEVICE`, else 'auto'. Without
 * this call the binary loads on first use by the same rule. A process keeps the first binary it loads, so a later
 * call asking for what that binary cannot give throws ERR_DYNAMOE_DEVICE.
 */
export function loadBackend(device?: Device): BackendInfo {
  const request =
    device === undefined ? environmentRequest() : { device: parseDevice(device, 'device'), by: `loadBackend('${device}')` };
  if (isBinaryLoaded()) {
    const current = loadedBinary();
    if (request.device === 'cpu' && current.kind === 'cuda') {
      throw new DynamoeError(
        'ERR_DYNAMOE_DEVICE',
        `${request.by} asked for the CPU binary, but this process already loaded the CUDA binary ${current.path} ` +
          `(${current.requestedBy}). Fix: call loadBackend('cpu') before any other dynamoe call, or set DYNAMOE_DEVICE=cpu.`,
      );
    }
    if (request.device === 'cuda') requireCuda(current, request.by);
  } else {
    loadedBinary(request);
  }
  return backendInfo();
}
