// Loads the compiled addon once per process, for the device DYNAMOE_DEVICE or loadBackend() asks for (internal).
import * as path from 'path';
import { Device, parseDevice } from '../device';
import { DynamoeError } from '../errors';
import {
  BinaryKind,
  BinarySource,
  chooseBinary,
  cpuCandidate,
  cudaCandidates,
  packageRoot,
  SkippedBinary,
  tryLoad,
} from './binary-choice';
import { noBinaryError } from './binary-diagnosis';
import type { NativeAddon } from './native-surface';

/** The binary a process uses, what asked for it, and the binaries passed over on the way. */
export interface LoadedBinary {
  addon: NativeAddon;
  path: string;
  kind: BinaryKind;
  source: BinarySource;
  requested: Device;
  /** What made the request: `loadBackend()`, `DYNAMOE_DEVICE=...`, or the default. */
  requestedBy: string;
  skipped: SkippedBinary[];
}

export interface DeviceRequest {
  device: Device;
  by: string;
}

/** The request made by the environment: `DYNAMOE_DEVICE`, else 'auto'. */
export function environmentRequest(): DeviceRequest {
  const value = process.env.DYNAMOE_DEVICE;
  if (value === undefined || value === '') return { device: 'auto', by: "the default, 'auto'" };
  return { device: parseDevice(value, 'DYNAMOE_DEVICE', { bareNames: true }), by: `DYNAMOE_DEVICE=${value}` };
}

// DYNAMOE_ADDON names one .node file to load instead (the sanitizer build in CI, or a custom build).
function loadOverride(file: string, request: DeviceRequest): LoadedBinary {
  const outcome = tryLoad(path.resolve(file));
  if (!outcome.addon) {
    throw new DynamoeError(
      'ERR_DYNAMOE_BINDING',
      `could not load the addon named by DYNAMOE_ADDON (${file}): ${outcome.error}. ` +
        'Fix: point DYNAMOE_ADDON at a built dynamoe .node file, or unset it to use the installed binary.',
    );
  }
  const kind = outcome.addon.backendInfo().cudaBuilt ? 'cuda' : 'cpu';
  return { addon: outcome.addon, path: path.resolve(file), kind, source: 'DYNAMOE_ADDON', requested: request.device, requestedBy: request.by, skipped: [] };
}

function load(request: DeviceRequest): LoadedBinary {
  const override = process.env.DYNAMOE_ADDON;
  if (override) return loadOverride(override, request);
  const root = packageRoot();
  const choice = chooseBinary(request.device, cudaCandidates(root), cpuCandidate(root));
  if (!choice.chosen) throw noBinaryError(request.device, request.by, choice);
  const { addon, path: file, kind, source } = choice.chosen;
  return { addon, path: file, kind, source, requested: request.device, requestedBy: request.by, skipped: choice.skipped };
}

let loaded: LoadedBinary | undefined;

/** The binary in use, loaded on first use for `request` (default: the environment's). */
export function loadedBinary(request?: DeviceRequest): LoadedBinary {
  loaded ??= load(request ?? environmentRequest());
  return loaded;
}

/** Whether a binary has been loaded yet (a process keeps the first one it loads). */
export function isBinaryLoaded(): boolean {
  return loaded !== undefined;
}

/** The loaded addon (loaded on first use). */
export function native(): NativeAddon {
  return loadedBinary().addon;
}
