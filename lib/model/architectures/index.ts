// Every architecture dynamoe can load from a Hugging Face checkpoint; adding one means adding its file here.
import { Architecture } from '../architecture';
import { ConfigReader } from '../config-reader';
import { DynamoeError } from '../../errors';
import { bailingMoeV2 } from './bailing-moe-v2';
import { deepseekMoe } from './deepseek-moe';
import { deepseekV2, deepseekV3 } from './deepseek-v2';
import { dots1 } from './dots1';
import { dynamicMoe } from './dynamic-moe';
import { ernie45Moe } from './ernie4-5-moe';
import { glm4Moe } from './glm4-moe';
import { llama4, llama4Text } from './llama4';
import { longcatFlash } from './longcat-flash';
import { minimaxM2 } from './minimax-m2';
import { gptOss } from './gpt-oss';
import { hunyuanMoe } from './hunyuan-moe';
import { graniteMoe } from './granite-moe';
import { mixtral } from './mixtral';
import { olmoe } from './olmoe';
import { qwen2Moe } from './qwen2-moe';
import { qwen3Moe } from './qwen3-moe';
import { qwen3VlMoe } from './qwen3-vl-moe';

// The Dynamic MoE check comes first: its configs carry another architecture's model_type.
export const architectures: readonly Architecture[] = [
  dynamicMoe,
  mixtral,
  qwen2Moe,
  qwen3Moe,
  olmoe,
  deepseekMoe,
  glm4Moe,
  deepseekV2,
  deepseekV3,
  gptOss,
  graniteMoe,
  longcatFlash,
  ernie45Moe,
  dots1,
  minimaxM2,
  bailingMoeV2,
  hunyuanMoe,
  qwen3VlMoe,
  llama4,
  llama4Text,
];

/** The architecture a config.json describes; ERR_DYNAMOE_UNSUPPORTED naming what was found otherwise. */
export function architectureForHfConfig(config: ConfigReader): Architecture {
  const found = architectures.find((a) => a.matchesHf(config));
  if (found) return found;
  const type = config.has('model_type') ? JSON.stringify(config.raw('model_type')) : 'none';
  throw new DynamoeError(
    'ERR_DYNAMOE_UNSUPPORTED',
    `${config.source}: model_type ${type} is not a supported MoE architecture ` +
      `(supported: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek, deepseek_v2, deepseek_v3, glm4_moe, gpt_oss, ` +
      `granitemoe, granitemoeshared, longcat_flash, ernie4_5_moe, dots1, minimax_m2, bailing_moe_v2, hunyuan_v1_moe, qwen3_vl_moe, llama4, llama4_text, and Dynamic MoE configs with top_p_threshold)`,
  );
}
