// The trained model shipped in the package (models/dynamoe-tiny-topp, see training/): what `npm start`,
// `run --demo`, `serve` without a model and `sweep|calibrate --demo` use unless --synthetic asks for random weights.
import * as path from 'path';
import { packageRoot } from '../addon/binary-choice';

/** The shipped checkpoint's folder name (also the model id `serve` reports). */
export const SHIPPED_MODEL_NAME = 'dynamoe-tiny-topp';

/** The shipped checkpoint: a Hugging Face folder in the Dynamic-MoE layout. */
export function shippedModelDir(): string {
  return path.join(packageRoot(), 'models', SHIPPED_MODEL_NAME);
}

/** Held-out text of the shipped model (chapters it never trained on): what `sweep|calibrate --demo` measure. */
export function shippedHeldOutText(): string {
  return path.join(shippedModelDir(), 'heldout.txt');
}
