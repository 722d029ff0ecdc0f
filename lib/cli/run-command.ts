// `dynamoe run`: generates text with a checkpoint, streamed to stdout, then routing and speed figures on stderr.
import { DynamoeError } from '../errors';
import { GenerateOptions } from '../model/model';
import { RoutingStats } from '../model/routing-stats';
import { dtypeFlag, fail, modelArgument, numberFlag, policyOrFileFlag, Values } from './args';
import { loadWithProgress } from './progress';
import { shippedModelDir } from './shipped-model';

function routingSummary(stats: RoutingStats): string[] {
  return [
    `policy          ${stats.policy}`,
    `experts/token   ${stats.expertsPerToken.toFixed(2)} mean; ` +
      `per MoE layer: ${stats.layers.map((l) => l.expertsPerToken.toFixed(2)).join(' ')}`,
  ];
}

/** The checkpoint to run: the one positional, or the shipped model with --demo. */
function runLocation(values: Values, positionals: string[]): string {
  if (!values.demo) return modelArgument(positionals, 'run');
  if (positionals.length > 0) fail(`'run --demo' takes no model path`);
  return shippedModelDir();
}

/** `dynamoe run <model>|--demo --prompt <text>`: streams a generation to stdout and its figures to stderr. */
export async function runCommand(values: Values, positionals: string[]): Promise<void> {
  const location = runLocation(values, positionals);
  const promptText = values.prompt as string | undefined;
  if (promptText === undefined) fail(`'run' needs --prompt <text>`);
  const options: GenerateOptions = {
    maxTokens: numberFlag(values, 'max-tokens', 128),
    temperature: numberFlag(values, 'temperature', 0, false),
    topK: numberFlag(values, 'top-k', 0, true, 0),
    topP: numberFlag(values, 'top-p', 1, false),
    seed: numberFlag(values, 'seed', 0, true, 0),
  };
  if (values.policy !== undefined) options.policy = await policyOrFileFlag(values.policy as string);
  const model = await loadWithProgress(location, dtypeFlag(values));
  const abort = new AbortController();
  const onInterrupt = () => abort.abort();
  process.once('SIGINT', onInterrupt);
  try {
    let prompt = promptText;
    if (values.chat) {
      const rendered = model.tokenizer.applyChatTemplate([{ role: 'user', content: promptText }], { addGenerationPrompt: true });
      if (rendered === null) {
        throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${location} has no chat template; leave out --chat`);
      }
      prompt = rendered;
      options.addSpecialTokens = false; // templates write their own BOS
    }
    const generation = model.generate(prompt, { ...options, signal: abort.signal });
    for await (const token of generation) process.stdout.write(token.text);
    process.stdout.write('\n');
    const s = generation.summary;
    if (!s) return;
    const rate = (tokens: number, ms: number) => (ms > 0 ? ((tokens * 1000) / ms).toFixed(1) : '-');
    const decodeSteps = Math.max(0, s.tokenIds.length - 1); // the prefill step yields the first token
    const lines = [
      ...routingSummary(s.stats),
      `tokens          ${s.promptTokens} prompt + ${s.tokenIds.length} generated (stopped: ${s.stopReason})`,
      `prefill         ${rate(s.promptTokens, s.prefillMs)} tokens/s (${s.prefillMs.toFixed(1)} ms)`,
      `decode          ${rate(decodeSteps, s.decodeMs)} tokens/s (${s.decodeMs.toFixed(1)} ms)`,
    ];
    process.stderr.write(`${lines.join('\n')}\n`);
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    model.dispose();
  }
}
