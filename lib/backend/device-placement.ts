// Where an object runs: a parsed `device` option resolved to 'cpu' or 'cuda' for a layer or a whole model.
import { cudaFix } from '../addon/binary-diagnosis';
import { LoadedBinary, loadedBinary, native } from '../addon/native';
import { systemFacts } from '../addon/system-facts';
import type { Device } from '../device';
import { DynamoeError } from '../errors';

/** What is being placed: a MoELayer or a route() call ('layer'), or a whole model from loadModel ('model'). */
export type Placement = 'layer' | 'model';

// A CUDA binary that predates whole models on CUDA (backendInfo without cudaWholeModels).
const NO_CUDA_MODELS =
  "this CUDA binary runs single MoE layers and routing only, not whole models; rebuild it (npm run build:cuda) " +
  "or use 'cpu' or 'auto'";

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
 * saying why when no GPU is usable, and for a model ERR_DYNAMOE_UNSUPPORTED when the CUDA binary predates whole
 * models on CUDA.
 */
export function resolveDevice(device: Device, placement: Placement): 'cpu' | 'cuda' {
  if (device === 'cpu') return 'cpu';
  const info = native().backendInfo();
  if (device === 'auto') return placement === 'model' && info.cudaWholeModels !== true ? 'cpu' : info.backend;
  requireCuda(loadedBinary(), "device 'cuda'");
  if (placement === 'model' && info.cudaWholeModels !== true) {
    throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', NO_CUDA_MODELS);
  }
  return 'cuda';
}
