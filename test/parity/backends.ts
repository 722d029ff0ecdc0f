// The backends of the parity harness: which this process can run, and the jest wrappers that skip the others loudly.
import { backendInfo } from '../../lib';

export type Backend = 'cpu' | 'cuda';

/** Every backend the table is listed for; an absent one is reported as skipped, never left out silently. */
export const ALL_BACKENDS: readonly Backend[] = ['cpu', 'cuda'];

/** The CPU always; CUDA where this binary has its kernels and a usable GPU (what device 'auto' would pick). */
export function backendsPresent(): Backend[] {
  return backendInfo().backend === 'cuda' ? ['cpu', 'cuda'] : ['cpu'];
}

export function isPresent(backend: Backend): boolean {
  return backendsPresent().includes(backend);
}

/** describe for a present backend, describe.skip (jest lists every test as skipped) for an absent one. */
export function describeOn(backend: Backend): jest.Describe {
  return isPresent(backend) ? describe : describe.skip;
}

/** One console.warn line saying why the CUDA tests of `file` are skipped (nothing when a GPU is usable). */
export function warnIfCudaAbsent(what: string): void {
  if (isPresent('cuda')) return;
  const info = backendInfo();
  console.warn(
    `${what} SKIPPED: ${info.cudaError}: ${info.cudaErrorMessage} — run on a machine with an NVIDIA GPU ` +
      'and DYNAMOE_ADDON=build-cuda/Release/dynamoe.node',
  );
}

/**
 * The describe of a file of CUDA-only tests: warns why they are skipped (nothing with a usable GPU) and adds one
 * test that runs everywhere (a file whose tests are all skipped has its console output dropped when jest runs
 * several files, and this keeps the warning visible); it also checks that a skip comes with a reason.
 */
export function cudaOnlySuite(what: string): jest.Describe {
  warnIfCudaAbsent(what);
  test(`${what}: tested on this machine, or the reason they are not is stated`, () => {
    const info = backendInfo();
    if (isPresent('cuda')) expect(info.backend).toBe('cuda');
    else expect(`${info.cudaError ?? ''}: ${info.cudaErrorMessage ?? ''}`.length).toBeGreaterThan(10);
  });
  return describeOn('cuda');
}
