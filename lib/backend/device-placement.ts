// Where an object runs: a parsed `device` option resolved to 'cpu' or 'cuda' for a layer or a whole model.
import { cudaFix } from '../addon/binary-diagnosis';
import { LoadedBinary, loadedBinary, native } from '../addon/native';
import { systemFacts } from '../addon/system-facts';
import type { Device } from '../device';
import { DynamoeError } from '../errors';

/** What is being placed: a MoELayer or a route() call ('layer'), or a whole model from loadModel ('model'). */
export type Placement = 'layer' | 'model';

const NO_CUDA_MODELS =
  "whole models run on the CPU for now (device 'cuda' runs single MoE layers: " +
  "MoELayer.fromWeights(weights, { device: 'cuda' })); use 'cpu' or 'auto'";

/** Throws ERR_DYNAMOE_DEVICE saying why `binary` cannot run on a GPU, when it cannot. */
export function requireCuda(binary: LoadedBinary, asker: string): void {
  const info = binary.addon.backendInfo();
  if (info.backend === 'cuda') return;
  if (binary.kind === 'cuda') {
    const reason = `${info.cudaError} (${info.cudaErrorMessage})`;
    throw new DynamoeError('ERR_DYNAMOE_DEVICE', `${asker} is not available: ${reason}. Fix: ${cudaFix(reason, systemFacts())}.`);
  }
  const skipped = binary.skipped.find((s) => s.kind === 'cuda');
  const why =
    binary.requested === 'cpu'
      ? `${binary.requestedBy} chose it`
      : skipped
        ? `the CUDA binary ${skipped.path} was passed over: ${skipped.reason}`
        : 'no CUDA binary was found';
  const fix =
    binary.requested === 'cpu'
      ? "set DYNAMOE_DEVICE=auto or cuda, or call loadBackend('cuda') before any other dynamoe call"
      : cudaFix(skipped?.reason ?? 'no CUDA binary was found', systemFacts());
  throw new DynamoeError(
    'ERR_DYNAMOE_DEVICE',
    `${asker} needs the CUDA binary, but this process uses the CPU-only one (cudaError: ${info.cudaError}, ${binary.path}) ` +
      `because ${why}. Fix: ${fix}.`,
  );
}

/**
 * The device `placement` runs on. 'auto' is the CUDA backend when it is usable for that object (a usable GPU and
 * driver; for a whole model also backendInfo's cudaWholeModels), else the CPU. 'cuda' throws ERR_DYNAMOE_DEVICE
 * when no GPU is usable, and for a model ERR_DYNAMOE_UNSUPPORTED while whole models cannot run on CUDA.
 */
export function resolveDevice(device: Device, placement: Placement): 'cpu' | 'cuda' {
  if (device === 'cpu') return 'cpu';
  const info = native().backendInfo();
  if (placement === 'model' && info.cudaWholeModels !== true) {
    if (device === 'cuda') throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', NO_CUDA_MODELS);
    return 'cpu';
  }
  if (device === 'auto') return info.backend;
  requireCuda(loadedBinary(), "device 'cuda'");
  return 'cuda';
}
