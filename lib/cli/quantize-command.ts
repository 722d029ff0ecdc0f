// `dynamoe quantize <model.gguf> --type q4_k_m|q8_0|q4_0|q4_k|q6_k --out <file.gguf>`: a quantized copy of a GGUF.
import { formatBytes } from '../format-bytes';
import { QUANTIZE_TARGETS, QuantizeTarget, quantizeGguf } from '../formats/quantize-gguf';
import { requireName } from '../validate';
import { fail, Values } from './args';

export async function quantizeCommand(values: Values, positionals: string[]): Promise<void> {
  if (positionals.length !== 1) fail("'quantize' takes one GGUF file (dynamoe --help shows the usage)");
  const out = values.out as string | undefined;
  if (!out) fail("'quantize' needs --out <file.gguf>");
  const type: QuantizeTarget = requireName(values.type, QUANTIZE_TARGETS, '--type', 'ERR_DYNAMOE_DTYPE', { bareNames: true });
  const started = performance.now();
  const report = await quantizeGguf(positionals[0], out, type);
  const counts = Object.entries(report.quantized).map(([t, n]) => `${n} ${t}`).join(', ');
  console.log(
    `dynamoe quantize: ${out}: ${counts || 'no'} tensors quantized, ${report.kept} kept; ` +
      `${formatBytes(report.bytesIn)} -> ${formatBytes(report.bytesOut)} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}
