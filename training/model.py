"""A decoder-only MoE language model in the seed paper's Dynamic-MoE (Llama-style) layout, for CPU training."""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab: int = 4096
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    experts: int = 8
    expert_ffn: int = 192
    context: int = 256
    # 'top-p' (the paper's dynamic routing, raw probabilities as weights) or 'top-k' (renormalised, Mixtral style).
    routing: str = 'top-p'
    top_p: float = 0.4
    top_k: int = 2
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(context, head_dim, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(context, dtype=torch.float32), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x, cos, sin):
    # Hugging Face Llama's convention (dynamoe's ropeStyle 'halves'): rotate the two halves of each head.
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.heads = c.heads
        self.head_dim = c.hidden // c.heads
        self.q_proj = nn.Linear(c.hidden, c.hidden, bias=False)
        self.k_proj = nn.Linear(c.hidden, c.hidden, bias=False)
        self.v_proj = nn.Linear(c.hidden, c.hidden, bias=False)
        self.o_proj = nn.Linear(c.hidden, c.hidden, bias=False)

    def forward(self, x, cos, sin):
        b, t, h = x.shape
        split = lambda y: y.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        q = rotate(split(self.q_proj(x)), cos[:t], sin[:t])
        k = rotate(split(self.k_proj(x)), cos[:t], sin[:t])
        v = split(self.v_proj(x))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, float('-inf'))
        out = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, h))


class Expert(nn.Module):
    def __init__(self, hidden, ffn):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, ffn, bias=False)
        self.up_proj = nn.Linear(hidden, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def select(probs, c: ModelConfig):
    """The kept-expert mask [T, E] and combine weights, as ROUTING.md defines top-p and top-k."""
    # A stable descending sort keeps the lower expert id first among equal probabilities.
    sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    if c.routing == 'top-p':
        # Keep sorted positions up to the first whose running sum exceeds p: those whose preceding sum is <= p.
        # p is compared in fp32 as dynamoe's router does (fp32 0.4 is a little above the double 0.4).
        before = torch.cat([torch.zeros_like(sorted_p[:, :1]), sorted_p.cumsum(-1)[:, :-1]], dim=-1)
        keep_sorted = before <= torch.tensor(c.top_p, dtype=sorted_p.dtype)
    else:
        keep_sorted = torch.zeros_like(sorted_p, dtype=torch.bool)
        keep_sorted[:, : c.top_k] = True
    mask = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    weights = probs * mask
    if c.routing != 'top-p':
        weights = weights / weights.sum(-1, keepdim=True)
    return mask, weights


class MoE(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.router = nn.Linear(c.hidden, c.experts, bias=False)
        self.experts = nn.ModuleList(Expert(c.hidden, c.expert_ffn) for _ in range(c.experts))

    def forward(self, x):
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.router(flat).float(), dim=-1)  # router math in fp32
        mask, weights = select(probs, self.config)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows = mask[:, e].nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            out.index_add_(0, rows, expert(flat[rows]) * weights[rows, e : e + 1])
        return out.view(shape), router_losses(probs, mask), mask.sum(-1).float()


def router_losses(probs, mask):
    """The paper's losses, defined as dynamoe's routerLosses: L_d = mean entropy, L_b = E * sum f_i Q_i."""
    entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1).mean()
    f = mask.float().mean(0)  # the selection is a step function: f carries no gradient
    q = probs.mean(0)
    balance = probs.shape[-1] * (f * q).sum()
    return entropy, balance


class Layer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden, c.norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden, c.norm_eps)
        self.mlp = MoE(c)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        y, losses, counts = self.mlp(self.post_attention_layernorm(x))
        return x + y, losses, counts


class MoeLm(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c.vocab, c.hidden)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden, c.norm_eps)
        cos, sin = rope_tables(c.context, c.hidden // c.heads, c.rope_theta)
        self.register_buffer('cos', cos, persistent=False)
        self.register_buffer('sin', sin, persistent=False)
        self.apply(init_weights)

    def forward(self, ids):
        """Logits [B, T, V], the summed (dynamic, balance) losses over layers and experts per token by layer."""
        x = self.embed_tokens(ids)
        entropy, balance, counts = 0.0, 0.0, []
        for layer in self.layers:
            x, (e, b), n = layer(x, self.cos, self.sin)
            entropy, balance = entropy + e, balance + b
            counts.append(n.mean())
        # Tied embeddings: the output projection is the embedding matrix (tie_word_embeddings).
        logits = self.norm(x) @ self.embed_tokens.weight.t()
        return logits, entropy, balance, torch.stack(counts)


def init_weights(module):
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
