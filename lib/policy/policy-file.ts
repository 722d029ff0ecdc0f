// Policy files: per-MoE-layer routing policies saved by `dynamoe calibrate`, accepted by `run --policy` and the API.
import { promises as fs } from 'fs';
import { DynamoeError } from '../errors';
import { MAX_EXPERTS, requireObject, typeError } from '../validate';
import { checkPolicy, RoutingPolicy } from './routing-policy';

/** The `format` field that marks a dynamoe policy file. */
export const POLICY_FILE_FORMAT = 'dynamoe-policy';

/** A policy file's content. */
export interface PolicyFile {
  format: typeof POLICY_FILE_FORMAT;
  version: 1;
  /** One policy per MoE layer, in layer order: pass it as the `policy` option of forward, score or generate. */
  policies: RoutingPolicy[];
  /** Decoder layer index of each entry of `policies`. */
  layers: number[];
  /** How the file was made (free-form; `dynamoe calibrate` writes its budget and measurements here). */
  about?: Record<string, unknown>;
}

function fail(path: string, message: string): never {
  throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${path} is not a dynamoe policy file: ${message}`);
}

/** Reads and checks the structure of a policy file (each policy is checked against the model when it is used). */
export async function readPolicyFile(path: string): Promise<PolicyFile> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (error) {
    throw new DynamoeError('ERR_DYNAMOE_IO', `cannot read policy file ${path}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    fail(path, `invalid JSON (${(error as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(path, 'the top level must be an object');
  const file = json as Record<string, unknown>;
  if (file.format !== POLICY_FILE_FORMAT) fail(path, `"format" must be "${POLICY_FILE_FORMAT}"`);
  if (file.version !== 1) fail(path, `"version" must be 1, got ${JSON.stringify(file.version)}`);
  const { policies, layers } = file;
  if (!Array.isArray(policies) || policies.length === 0) fail(path, '"policies" must be a non-empty array');
  if (!policies.every((p) => typeof p === 'object' && p !== null && !Array.isArray(p))) {
    fail(path, '"policies" must hold policy objects such as {"kind": "top-p", "p": 0.4}');
  }
  if (!Array.isArray(layers) || layers.length !== policies.length || !layers.every(Number.isInteger)) {
    fail(path, '"layers" must list one integer layer index per policy');
  }
  return file as unknown as PolicyFile;
}

/** Writes a policy file (pretty JSON). */
export async function writePolicyFile(
  path: string,
  policies: RoutingPolicy[],
  layers: number[],
  about?: Record<string, unknown>,
): Promise<void> {
  if (typeof path !== 'string' || path === '') typeError('path', 'a file name', path);
  if (!Array.isArray(policies) || policies.length === 0) typeError('policies', 'a non-empty array', policies);
  policies.forEach((policy) => checkPolicy(policy, MAX_EXPERTS));
  if (!Array.isArray(layers) || layers.length !== policies.length || !layers.every((l) => Number.isInteger(l) && l >= 0)) {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', 'layers must list one layer index (an integer >= 0) per policy');
  }
  if (about !== undefined) requireObject(about, 'about');
  const file: PolicyFile = { format: POLICY_FILE_FORMAT, version: 1, policies, layers, ...(about ? { about } : {}) };
  try {
    await fs.writeFile(path, `${JSON.stringify(file, null, 2)}\n`);
  } catch (error) {
    throw new DynamoeError('ERR_DYNAMOE_IO', `cannot write policy file ${path}: ${(error as Error).message}`);
  }
}
