// A Hugging Face checkpoint directory as the tests' fixtures write it: config.json, the tiny tokenizer and one
// model.safetensors.
import * as fs from 'fs';
import * as path from 'path';
import { writeSafetensors } from '../lib/formats/safetensors';
import { TensorInput } from '../lib/formats/tensor-store';
import { writeTinyTokenizer } from './tokenizer-fixtures';

export async function writeHfDirectory(
  dir: string,
  config: Record<string, unknown>,
  tokenizer: Parameters<typeof writeTinyTokenizer>[1],
  tensors: TensorInput[],
): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeTinyTokenizer(dir, tokenizer);
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
}
