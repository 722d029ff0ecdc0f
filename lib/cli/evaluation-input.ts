// The model and text that `sweep` and `calibrate` measure: a checkpoint, the shipped model (--demo) or the synthetic
// one (--demo --synthetic); a file, the shipped model's held-out text or the synthetic demo's paragraph.
import { promises as fs } from 'fs';
import { DynamoeError } from '../errors';
import { Model } from '../model/model';
import { createSyntheticModel } from '../model/synthetic-model';
import { textWindows } from '../toolkit/text-windows';
import { dtypeFlag, fail, modelArgument, numberFlag, Values } from './args';
import { DEMO_TEXT } from './demo-text';
import { loadingProgress, loadWithProgress } from './progress';
import { shippedHeldOutText, shippedModelDir } from './shipped-model';

export interface EvaluationInput {
  model: Model;
  windows: Int32Array[];
  /** Where the text came from, for the report. */
  textSource: string;
}

async function openModel(values: Values, positionals: string[], command: string): Promise<Model> {
  if (!values.demo) return loadWithProgress(modelArgument(positionals, command), dtypeFlag(values));
  if (positionals.length > 0) fail(`'${command} --demo' takes no model path`);
  if (!values.synthetic) return loadWithProgress(shippedModelDir(), dtypeFlag(values));
  const progress = loadingProgress('synthetic demo model');
  const zeroExperts = numberFlag(values, 'zero-experts', 0, true, 0);
  const model = await createSyntheticModel({ dtype: dtypeFlag(values), onProgress: progress.onProgress, zeroExperts });
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
  if (values.synthetic && !values.demo) fail(`--synthetic goes with --demo`);
  const given = values.text as string | undefined;
  if (given === undefined && !values.demo) fail(`'${command}' needs --text <file> (or --demo)`);
  // The synthetic model has no text of its own: it is measured on a built-in paragraph.
  const textPath = given ?? (values.synthetic ? undefined : shippedHeldOutText());
  const text = textPath === undefined ? DEMO_TEXT : await readText(textPath);
  const model = await openModel(values, positionals, command);
  try {
    const window = values.window === undefined ? undefined : numberFlag(values, 'window', 0, true, 2);
    const maxTokens = values['max-tokens'] === undefined ? undefined : numberFlag(values, 'max-tokens', 0);
    const windows = textWindows(model.tokenizer, text, model.spec.maxContext, { window, maxTokens });
    const textSource = given ?? (textPath === undefined ? 'the built-in demo text' : "the shipped model's held-out text");
    return { model, windows, textSource };
  } catch (error) {
    model.dispose();
    throw error;
  }
}
