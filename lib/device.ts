// Device names: the one parser of the `device` options, loadBackend() and DYNAMOE_DEVICE.
import { NameMessage, requireName } from './validate';

/**
 * Where an object's weights live and its kernels run. `'auto'` means the same everywhere: the CUDA backend when it
 * is usable for that object, else the CPU. For a {@link MoELayer} or {@link route} that is when
 * {@link backendInfo}().backend is `'cuda'`; a whole model ({@link loadModel}) also needs CUDA support for whole
 * models, which no build has yet, so models run on the CPU.
 */
export type Device = 'cpu' | 'cuda' | 'auto';

/** The device names, in the order messages list them. */
export const DEVICES: readonly Device[] = ['cpu', 'cuda', 'auto'];

/** Whether `value` names a device. */
export function isDevice(value: unknown): value is Device {
  return (DEVICES as readonly unknown[]).includes(value);
}

/** `value` as a Device; otherwise ERR_DYNAMOE_VALUE naming `what` ("device must be 'cpu', 'cuda' or 'auto', ..."). */
export function parseDevice(value: unknown, what: string, message?: NameMessage): Device {
  return requireName(value, DEVICES, what, 'ERR_DYNAMOE_VALUE', message);
}
