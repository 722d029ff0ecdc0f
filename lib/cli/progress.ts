// Progress on stderr for the CLI: a cli-progress bar on a terminal, plain lines otherwise.
import { SingleBar } from 'cli-progress';
import { DType } from '../dtype';
import { ProgressCallback } from '../model/build-graph';
import { WritableQuantType } from '../formats/quant-types';
import { loadModel } from '../model/load-model';
import { Model } from '../model/model';

/** A bar over some units of work; `what` names the current part. Silent when stderr is not a terminal. */
export function taskProgress(title: string, unit: string): { update(done: number, total: number, what?: string): void; stop(): void } {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${title} [{bar}] {percentage}% | {value}/{total} ${unit} | {duration_formatted} | {what}`,
    barCompleteChar: '=',
    barIncompleteChar: ' ',
    hideCursor: true,
    clearOnComplete: true,
  });
  let started = false;
  return {
    update: (done, total, what = '') => {
      if (!started) bar.start(total, 0, { what });
      started = true;
      bar.setTotal(total);
      bar.update(done, { what });
    },
    stop: () => bar.stop(),
  };
}

/** Progress of weight packing: a bar on a terminal, otherwise one plain line when done. */
export function loadingProgress(what: string): { onProgress: ProgressCallback; done(): void; stop(): void } {
  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(2);
  if (!process.stderr.isTTY) {
    process.stderr.write(`loading ${what} ...`);
    return {
      onProgress: () => undefined,
      done: () => process.stderr.write(` done in ${seconds()} s\n`),
      stop: () => process.stderr.write('\n'),
    };
  }
  const bar = taskProgress(`loading ${what}`, 'nodes');
  return {
    onProgress: (done, total) => bar.update(done, total),
    done: () => {
      bar.stop();
      process.stderr.write(`loaded ${what} in ${seconds()} s\n`);
    },
    stop: () => bar.stop(),
  };
}

/** Loads a checkpoint with a loading progress display. */
export async function loadWithProgress(location: string, dtype: DType | WritableQuantType | undefined): Promise<Model> {
  const progress = loadingProgress(location);
  try {
    const model = await loadModel(location, { dtype, onProgress: progress.onProgress });
    progress.done();
    return model;
  } catch (error) {
    progress.stop();
    throw error;
  }
}
