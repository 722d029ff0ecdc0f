// `dynamoe demo`: the demo's flags turned into its settings, with a loading bar while the weights are packed.
import { dtypeFlag, fail, numberFlag, Values } from './args';
import { DEFAULT_DEMO, runDemo } from './demo';
import { loadingProgress } from './progress';

/** Flags that shape the synthetic model, meaningless for the trained one. */
const SHAPE_FLAGS = ['layers', 'hidden', 'heads', 'kv-heads', 'experts', 'ffn', 'seed'];

/** `dynamoe demo` (the default command): the shipped model, or with --synthetic a random one of the flags' shape. */
export async function demoCommand(values: Values): Promise<void> {
  const synthetic = values.synthetic === true;
  const shapeFlag = SHAPE_FLAGS.find((name) => values[name] !== undefined);
  if (!synthetic && shapeFlag !== undefined) fail(`--${shapeFlag} shapes the synthetic model: add --synthetic`);
  const progress = process.stderr.isTTY ? loadingProgress(synthetic ? 'synthetic model' : 'trained model') : undefined;
  const policies = values.policy as string[] | undefined;
  try {
    await runDemo(
      {
        model: DEFAULT_DEMO.model,
        synthetic,
        layers: numberFlag(values, 'layers', DEFAULT_DEMO.layers),
        hidden: numberFlag(values, 'hidden', DEFAULT_DEMO.hidden),
        heads: numberFlag(values, 'heads', DEFAULT_DEMO.heads),
        kvHeads: numberFlag(values, 'kv-heads', DEFAULT_DEMO.kvHeads),
        experts: numberFlag(values, 'experts', DEFAULT_DEMO.experts),
        ffn: numberFlag(values, 'ffn', DEFAULT_DEMO.ffn),
        dtype: dtypeFlag(values) ?? DEFAULT_DEMO.dtype,
        seed: numberFlag(values, 'seed', DEFAULT_DEMO.seed, true, 0),
        policies: policies ?? DEFAULT_DEMO.policies,
        tokens: numberFlag(values, 'tokens', DEFAULT_DEMO.tokens),
        prompt: (values.prompt as string | undefined) ?? DEFAULT_DEMO.prompt,
        repeats: numberFlag(values, 'repeats', DEFAULT_DEMO.repeats),
      },
      (line) => {
        progress?.stop(); // the bar, if any, is done once the first result line is printed
        console.log(line);
      },
      progress?.onProgress,
    );
  } finally {
    progress?.stop();
  }
}
