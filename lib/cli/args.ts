// Command-line flag parsing shared by the dynamoe commands: checked numbers, dtypes, policies and the model argument.
import { DType, DTYPES } from '../dtype';
import { DynamoeError } from '../errors';
import { WRITABLE_QUANT_TYPES, WritableQuantType } from '../formats/quant-types';
import { PolicyOption } from '../policy/per-layer';
import { readPolicyFile } from '../policy/policy-file';
import { requireName } from '../validate';

/** Parsed flag values of one command. */
export type Values = Record<string, string | boolean | string[] | undefined>;

export function fail(message: string): never {
  throw new DynamoeError('ERR_DYNAMOE_VALUE', message);
}

/** A flag's value as a number, checked: integers >= `min`, or any finite number when `integer` is false. */
export function numberFlag(values: Values, name: string, fallback: number, integer = true, min = 1): number {
  const value = values[name];
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value === '' || !Number.isFinite(n) || (integer && (!Number.isInteger(n) || n < min))) {
    fail(`--${name} must be ${integer ? `an integer >= ${min}` : 'a number'}, got '${String(value)}'`);
  }
  return n;
}

/** --dtype: f32, f16, bf16, or a quantized type the experts are quantized to as they load. */
export function dtypeFlag(values: Values): DType | WritableQuantType | undefined {
  const dtype = values.dtype as string | undefined;
  if (dtype === undefined) return undefined;
  return requireName(dtype, [...DTYPES, ...WRITABLE_QUANT_TYPES], '--dtype', 'ERR_DYNAMOE_DTYPE', { bareNames: true });
}

/** `top-p:0.4` (every MoE layer) or `top-k:4,top-p:0.4` (one per MoE layer), or a policy file from `calibrate`. */
export async function policyOrFileFlag(text: string): Promise<PolicyOption> {
  return text.endsWith('.json') ? readPolicyFile(text) : text;
}

/** The one positional argument: a model directory or .gguf file. */
export function modelArgument(positionals: string[], command: string): string {
  if (positionals.length !== 1) {
    const given = `got ${positionals.length} (dynamoe --help shows the usage)`;
    fail(`'${command}' needs one model path (a directory or a .gguf file), ${given}`);
  }
  return positionals[0];
}
