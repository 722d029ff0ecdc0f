// `dynamoe inspect`: a checkpoint's architecture, layer kinds, sizes, default policy, weights and tokenizer.
import { formatBytes } from '../format-bytes';
import { Model } from '../model/model';
import { FeedForwardSpec, MoELayerSpec } from '../model/spec';
import { dtypeFlag, modelArgument, Values } from './args';
import { loadWithProgress } from './progress';

/** Per-layer figures: compact when all equal. */
function perLayer(values: string[]): string {
  return values.every((v) => v === values[0]) ? `${values[0]} (every layer)` : values.join(' ');
}

/** The router of a MoE layer: scoring, selection bias, groups, the family's weight rule. */
export function routerText(layer: MoELayerSpec): string {
  const r = layer.router;
  const parts = [`${r?.scoring ?? 'softmax'} router`];
  if (r?.selectionBias) parts.push('selection bias');
  if (r?.groups) parts.push(`best ${r.groups.keep} of ${r.groups.count} groups (${r.groups.score})`);
  if (r?.normalize) parts.push('renormalised');
  if (r?.scale !== undefined && r.scale !== 1) parts.push(`x${r.scale}`);
  if (layer.zeroExperts) parts.push(`${layer.zeroExperts.count} ${layer.zeroExperts.kind} zero-computation experts`);
  return parts.join(', ');
}

function layerText(layer: FeedForwardSpec): string {
  if (layer.kind === 'dense') return `dense, ffn ${layer.ffn}`;
  const shared = layer.shared ? `, shared expert ffn ${layer.shared.ffn}${layer.shared.gated ? ' (gated)' : ''}` : '';
  return `moe, ${layer.experts} experts x ffn ${layer.ffn}${shared}; ${routerText(layer)}`;
}

/** Runs of equal layers: `0-1  moe, 8 experts x ffn 48`. */
function layerRuns(layers: FeedForwardSpec[]): string[] {
  const out: string[] = [];
  for (let start = 0; start < layers.length; ) {
    const text = layerText(layers[start]);
    let end = start;
    while (end + 1 < layers.length && layerText(layers[end + 1]) === text) end++;
    out.push(`  ${start === end ? `${start}` : `${start}-${end}`}`.padEnd(16) + text);
    start = end + 1;
  }
  return out;
}

function hasChatTemplate(model: Model): boolean {
  try {
    return model.tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }) !== null;
  } catch {
    return true; // a template that rejects this conversation is still a template
  }
}

/** `dynamoe inspect <model>`: prints what `model.info` and the tokenizer say. */
export async function inspectCommand(values: Values, positionals: string[]): Promise<void> {
  const location = modelArgument(positionals, 'inspect');
  const model = await loadWithProgress(location, dtypeFlag(values));
  try {
    const info = model.info;
    const t = model.tokenizer;
    const moe = info.layers.filter((l) => l.kind === 'moe').length;
    const lines = [
      `architecture    ${info.architecture}`,
      `source          ${info.source}`,
      `dtype           ${info.dtype}`,
      `layers          ${info.layers.length} (${moe} MoE, ${info.layers.length - moe} dense)`,
      ...layerRuns(info.layers),
      ...(info.shortcutMoe
        ? [`layer shape     shortcut-connected: 2 attentions and 2 dense MLPs (ffn ${info.shortcutMoe.denseFfn}) per ` +
            'layer, the MoE block read after the first attention and added after the second MLP']
        : []),
      `hidden          ${info.hidden}, heads ${info.heads}, kv heads ${info.kvHeads}, head dim ${info.headDim}` +
        (info.rotaryDim !== undefined && info.rotaryDim !== info.headDim ? ` (${info.rotaryDim} rotary)` : ''),
      ...(info.mla
        ? [`attention       MLA: kv_lora_rank ${info.mla.kvLoraRank}, q_lora_rank ${info.mla.qLoraRank ?? 'none'}, ` +
            `nope/rope/value head dims ${info.mla.nopeDim}/${info.mla.ropeDim}/${info.mla.valueDim}`]
        : []),
      `vocab           ${info.vocab}`,
      `context         ${info.maxContext}`,
      `default policy  ${perLayer(info.defaultPolicy)}`,
      `weights         ${formatBytes(info.weightBytes)}`,
      `tokenizer       ${t.vocabSize} tokens, bos ${t.bosTokenId ?? 'none'}, eos ${t.eosTokenIds.join(',') || 'none'}, ` +
        `chat template: ${hasChatTemplate(model) ? 'yes' : 'no'}`,
    ];
    console.log(lines.join('\n'));
  } finally {
    model.dispose();
  }
}
