// The model and text that `sweep` and `calibrate` measure: a checkpoint or the demo model, a file or the demo text.
import { promises as fs } from 'fs';
import { DynamoeError } from '../errors';
import { Model } from '../model/model';
import { createSyntheticModel } from '../model/synthetic-model';
import { textWindows } from '../toolkit/text-windows';
import { dtypeFlag, fail, modelArgument, numberFlag, Values } from './args';
import { DEMO_TEXT } from './demo-text';
import { loadingProgress, loadWithProgress } from './progress';

export interface EvaluationInput {
  model: Model;
  windows: Int32Array[];
  /** Where the text came from, for the report. */
  textSource: string;
}

async function openModel(values: Values, positionals: string[], command: string): Promise<Model> {
  if (!values.demo) return loadWithProgress(modelArgument(positionals, command), dtypeFlag(values));
  if (positionals.length > 0) fail(`'${command} --demo' takes no model path`);
  const progress = loadingProgress('demo model');
  const model = await createSyntheticModel({ dtype: dtypeFlag(values), onProgress: progress.onProgress });
  progress.done();
  return model;
}

async function readText(path: string): Promise<string> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (error) {
    throw new DynamoeError('ERR_DYNAMOE_IO', `cannot read --text ${path}: ${(error as Error).message}`);
  }
}

/** Opens the model and cuts the text into windows; the caller disposes the model. */
export async function openEvaluation(values: Values, positionals: string[], command: string): Promise<EvaluationInput> {
  const textPath = values.text as string | undefined;
  if (textPath === undefined && !values.demo) fail(`'${command}' needs --text <file> (or --demo)`);
  const text = textPath === undefined ? DEMO_TEXT : await readText(textPath);
  const model = await openModel(values, positionals, command);
  try {
    const window = values.window === undefined ? undefined : numberFlag(values, 'window', 0, true, 2);
    const maxTokens = values['max-tokens'] === undefined ? undefined : numberFlag(values, 'max-tokens', 0);
    const windows = textWindows(model.tokenizer, text, model.spec.maxContext, { window, maxTokens });
    return { model, windows, textSource: textPath ?? 'the built-in demo text' };
  } catch (error) {
    model.dispose();
    throw error;
  }
}
