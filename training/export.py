"""Exports a training checkpoint as a Hugging Face checkpoint folder that dynamoe's loadModel reads.

top-p models use the seed paper's Dynamic-MoE layout (config keys num_experts, top_p_threshold, expert_frequency;
mlp.router / mlp.experts.{e}.{gate,up,down}_proj); top-k models use Mixtral's (block_sparse_moe, renormalised top-k).
"""
import argparse
import json
import shutil
from pathlib import Path

import torch

from safetensors_writer import write_safetensors

# The model is not chat-tuned: a chat request is the messages' texts, one per line, for the model to continue.
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] + '\\n' }}{% endfor %}"

# Mixtral's names for an expert's gate, up and down projections.
MIXTRAL_MATRICES = {'gate_proj': 'w1', 'up_proj': 'w3', 'down_proj': 'w2'}


def hf_config(c, dtype):
    common = {
        'vocab_size': c['vocab'], 'hidden_size': c['hidden'], 'intermediate_size': c['expert_ffn'],
        'num_hidden_layers': c['layers'], 'num_attention_heads': c['heads'], 'num_key_value_heads': c['heads'],
        'max_position_embeddings': c['context'], 'rope_theta': c['rope_theta'], 'rms_norm_eps': c['norm_eps'],
        'tie_word_embeddings': True, 'torch_dtype': dtype, 'eos_token_id': c['vocab'] - 1,
    }
    if c['routing'] == 'top-p':
        return {**common, 'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'num_experts': c['experts'],
                'top_p_threshold': c['top_p'], 'expert_frequency': 1}
    return {**common, 'architectures': ['MixtralForCausalLM'], 'model_type': 'mixtral',
            'num_local_experts': c['experts'], 'num_experts_per_tok': c['top_k']}


def hf_name(name, routing):
    """The checkpoint name of a training parameter (training names follow the Dynamic-MoE layout)."""
    name = name if name.startswith('model.') else f'model.{name}'
    if routing == 'top-p':
        return name
    parts = name.split('.')
    if 'mlp' in parts:
        at = parts.index('mlp')
        parts[at] = 'block_sparse_moe'
        if parts[at + 1] == 'router':
            parts[at + 1] = 'gate'
        else:
            parts[at + 3] = MIXTRAL_MATRICES[parts[at + 3]]
    return '.'.join(parts)


def export(checkpoint, tokenizer, out, dtype='float16', heldout=None):
    state = torch.load(checkpoint)
    c = state['config']
    torch_dtype = {'float16': torch.float16, 'bfloat16': torch.bfloat16, 'float32': torch.float32}[dtype]
    tensors = {}
    for name, value in state['model'].items():
        # Norm weights stay f32, as Hugging Face's converters write them; matrices take the file dtype.
        tensors[hf_name(name, c['routing'])] = value.float() if value.dim() == 1 else value.to(torch_dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / 'model.safetensors', tensors, {'format': 'pt'})
    (out / 'config.json').write_text(json.dumps(hf_config(c, dtype), indent=2) + '\n')
    shutil.copyfile(tokenizer, out / 'tokenizer.json')
    tokenizer_config = {'eos_token': '<|endoftext|>', 'model_max_length': c['context'], 'chat_template': CHAT_TEMPLATE}
    (out / 'tokenizer_config.json').write_text(json.dumps(tokenizer_config, indent=2) + '\n')
    if heldout:
        shutil.copyfile(heldout, out / 'heldout.txt')
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--tokenizer', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--dtype', choices=['float16', 'bfloat16', 'float32'], default='float16')
    parser.add_argument('--heldout', help='held-out text to ship with the model (what sweep --demo measures)')
    args = parser.parse_args()
    print(f'exported -> {export(args.checkpoint, args.tokenizer, args.out, args.dtype, args.heldout)}')


if __name__ == '__main__':
    main()
