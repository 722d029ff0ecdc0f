// The scheduler limits of a model (loadModel's maxSequences, tokensPerStep, kvPoolTokens, maxQueue): checked, with
// defaults sized from the machine's threads and memory.
import { getThreads } from '../backend/cpu-settings';
import { integerOption } from '../validate';
import { kvCacheBytes, kvElementBytes, usableMemory } from './memory-need';
import { ModelSpec } from './spec';
import { SchedulerLimits } from './step-scheduler';

/** The options of loadModel that size its scheduler and KV pool. */
export interface SchedulerOptions {
  /** Sequences one step runs at once (default: 16 per thread, 32 to 256). */
  maxSequences?: number;
  /** Tokens one step runs, decodes first, then prompt chunks (default: 128 per thread, 256 to 2048). */
  tokensPerStep?: number;
  /**
   * Positions the KV pool holds over all sequences (default: maxSequences contexts of up to 8192 positions, at
   * least one whole context, within half the memory the weights leave: the process's on the CPU, the GPU's on
   * CUDA). On the CPU memory is taken as blocks are first used; on CUDA the whole pool is allocated at load.
   */
  kvPoolTokens?: number;
  /** Requests that may wait for admission; more are refused with ERR_DYNAMOE_BUSY (default 1024). */
  maxQueue?: number;
}

/** The checked limits and KV pool size of a model with `weightBytes` of weights. */
export function schedulerLimits(
  spec: ModelSpec,
  weightBytes: number,
  options: SchedulerOptions,
  device: 'cpu' | 'cuda' = 'cpu',
  memory: number = usableMemory(),
  kvElement: number = kvElementBytes('cpu', 'f32'),
): SchedulerLimits & { kvPoolTokens: number } {
  const threads = getThreads();
  // A GPU runs the widest steps whatever the host's threads: its defaults are the CPU's upper bounds.
  const gpu = device === 'cuda';
  const maxSequences = integerOption(options.maxSequences, 'maxSequences', gpu ? 256 : clamp(16 * threads, 32, 256), 1, 4096);
  const tokensPerStep = integerOption(
    options.tokensPerStep,
    'tokensPerStep',
    gpu ? 2048 : clamp(128 * threads, 256, 2048),
    1,
    1 << 20,
  );
  const maxQueue = integerOption(options.maxQueue, 'maxQueue', 1024, 0);
  const perPosition = kvCacheBytes(spec, 1, kvElement);
  // `memory`: the process's (CPU) or the GPU's free memory before the weights are uploaded (CUDA).
  const affordable = Math.floor(Math.max(0, memory - weightBytes) / 2 / perPosition);
  const wanted = Math.max(spec.maxContext, maxSequences * Math.min(spec.maxContext, 8192));
  const fallback = clamp(Math.min(wanted, affordable), 1, 1 << 30);
  const kvPoolTokens = integerOption(options.kvPoolTokens, 'kvPoolTokens', fallback, 1, 1 << 30);
  return { maxSequences, tokensPerStep, maxQueue, kvPoolTokens };
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
