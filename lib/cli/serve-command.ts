// `dynamoe serve`: a checkpoint (without one: the shipped trained model, or with --synthetic the demo's random one)
// behind the OpenAI-compatible server until a signal.
import { parseDevice } from '../device';
import { loadModel } from '../model/load-model';
import { SchedulerOptions } from '../model/scheduler-limits';
import { Model } from '../model/model';
import { createSyntheticModel } from '../model/synthetic-model';
import { PolicyOption } from '../policy/per-layer';
import { startServer } from '../serve/server';
import { defaultModelName, RequestRecord, SERVE_DEFAULTS } from '../serve/serve-options';
import { dtypeFlag, fail, numberFlag, policyOrFileFlag, Values } from './args';
import { DEFAULT_DEMO } from './demo';
import { loadingProgress } from './progress';
import { shippedModelDir } from './shipped-model';

// An integer flag >= min, or undefined when absent (the library then sizes it from the machine).
function optionalNumber(values: Values, name: string, min: number): number | undefined {
  return values[name] === undefined ? undefined : numberFlag(values, name, 0, true, min);
}

/** Default of --drain-timeout, in seconds. */
const DRAIN_TIMEOUT_SECONDS = SERVE_DEFAULTS.drainTimeoutMs / 1000;

async function loadServedModel(
  values: Values,
  positionals: string[],
  policy: PolicyOption | undefined,
  limits: SchedulerOptions,
): Promise<Model> {
  if (positionals.length > 1) {
    fail(`'serve' takes at most one model path, got ${positionals.length} (dynamoe --help shows the usage)`);
  }
  const device = parseDevice(values.device ?? 'auto', '--device', { bareNames: true, shown: (v) => `'${String(v)}'` });
  const dtype = dtypeFlag(values);
  if (values.synthetic && positionals.length > 0) fail(`'serve --synthetic' takes no model path`);
  const location = values.synthetic ? undefined : (positionals[0] ?? shippedModelDir());
  const progress = loadingProgress(location ?? 'the synthetic demo model');
  try {
    let model: Model;
    if (location !== undefined) {
      model = await loadModel(location, { dtype, device, policy, onProgress: progress.onProgress, ...limits });
    } else {
      const { layers, hidden, heads, kvHeads, experts, ffn, seed } = DEFAULT_DEMO;
      const shape = { layers, hidden, heads, kvHeads, experts, ffn, seed };
      const onProgress = progress.onProgress;
      model = await createSyntheticModel({ ...shape, dtype: dtype ?? DEFAULT_DEMO.dtype, device, policy, onProgress, ...limits });
    }
    progress.done();
    return model;
  } catch (error) {
    progress.stop();
    throw error;
  }
}

function logLine(record: RequestRecord): void {
  const code = record.code ? ` ${record.code}` : '';
  console.log(`${record.method} ${record.path} ${record.status} ${record.ms.toFixed(0)} ms${code}`);
  if (record.error !== undefined) console.error('dynamoe serve: unexpected error:', record.error);
}

/** Resolves on the first SIGINT or SIGTERM; a second one calls `again`. */
function untilSignal(again: () => void): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) return again();
      received = true;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * `dynamoe serve [<model>]`: serves the model until SIGINT or SIGTERM, then refuses new requests (503), lets running
 * generations finish (at most --drain-timeout seconds; a second signal aborts them at once), disposes the model
 * and returns, so the process exits with 0.
 */
export async function serveCommand(values: Values, positionals: string[]): Promise<void> {
  const policy = values.policy === undefined ? undefined : await policyOrFileFlag(values.policy as string);
  const options = {
    host: (values.host as string | undefined) ?? SERVE_DEFAULTS.host,
    port: numberFlag(values, 'port', SERVE_DEFAULTS.port, true, 0),
    maxSequences: optionalNumber(values, 'max-sequences', 1),
    maxQueue: numberFlag(values, 'max-queue', SERVE_DEFAULTS.maxQueue, true, 0),
    maxBodyBytes: numberFlag(values, 'max-body-bytes', SERVE_DEFAULTS.maxBodyBytes),
    drainTimeoutMs: Math.round(numberFlag(values, 'drain-timeout', DRAIN_TIMEOUT_SECONDS, false) * 1000),
    contextTokens: values.context === undefined ? undefined : numberFlag(values, 'context', 0, true, 2),
    defaultMaxTokens: numberFlag(values, 'default-max-tokens', SERVE_DEFAULTS.defaultMaxTokens),
    modelName: values['model-name'] as string | undefined,
    log: logLine,
  };
  if (options.drainTimeoutMs < 0) {
    fail(`--drain-timeout must be a number of seconds >= 0, got '${String(values['drain-timeout'])}'`);
  }
  const limits: SchedulerOptions = {
    maxSequences: options.maxSequences,
    tokensPerStep: optionalNumber(values, 'tokens-per-step', 1),
    kvPoolTokens: optionalNumber(values, 'kv-pool-tokens', 1),
  };
  const model = await loadServedModel(values, positionals, policy, limits);
  let server;
  try {
    server = await startServer(model, options);
  } catch (error) {
    model.dispose();
    throw error;
  }
  const info = model.info;
  console.log(
    `dynamoe serve: ${options.modelName ?? defaultModelName(model)} (${info.architecture}, ${info.dtype}, policy ` +
      `${[...new Set(info.defaultPolicy)].join(',')}) on ${server.url}  (OpenAI API: ${server.url}/v1; ` +
      `${info.limits.maxSequences} sequences of ${info.limits.tokensPerStep} tokens per step, KV pool ` +
      `${info.kvPool.positions} positions, queue ${options.maxQueue})`,
  );
  const signal = await untilSignal(() => {
    console.log('second signal: aborting running generations');
    void server.close({ drainTimeoutMs: 0 });
  });
  const seconds = options.drainTimeoutMs / 1000;
  console.log(`${signal}: draining (new requests get 503; running generations get ${seconds} s to finish)`);
  await server.close();
  model.dispose();
  console.log('dynamoe serve: stopped');
}
