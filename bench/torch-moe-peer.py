#!/usr/bin/env python3
"""PyTorch peer for the MoE-layer benchmark: the layer as PyTorch code runs it on a CPU (router, top-k,
renormalised weights, then per expert: gather its tokens, SwiGLU, down projection, scatter-add), bf16 matmuls on
oneDNN. Driven by bench/torch-moe-peer.ts over stdin/stdout, one JSON object per line each way:

  {"op": "load", "path": P, "experts": E, "hidden": H, "ffn": F, "k": K}
      P holds f32 router [E][H], gate [E][F][H], up [E][F][H], down [E][H][F], one after the other
  {"op": "inputs", "path": P, "tokens": T, "count": N}    N batches of [T][H] f32
  {"op": "forward", "index": i}   runs batch i, answers {"ms": ...} (timed here: the pipe is not the peer's time)
  {"op": "output", "index": i, "path": P}                 writes batch i's output, [T][H] f32

Every answer is a line: {"ok": true, ...} or {"error": "..."}.
"""
import json
import sys
import time

import numpy as np
import torch


class MoeLayer:
    def __init__(self, path, experts, hidden, ffn, k):
        flat = torch.from_numpy(np.fromfile(path, dtype=np.float32))
        sizes = [experts * hidden, experts * ffn * hidden, experts * ffn * hidden, experts * hidden * ffn]
        if flat.numel() != sum(sizes):
            raise ValueError(f"{path}: {flat.numel()} floats, expected {sum(sizes)}")
        router, gate, up, down = torch.split(flat, sizes)
        self.router = router.reshape(experts, hidden).clone()  # routing in f32, as dynamoe's
        # Transposed once here, so each forward multiplies [tokens][in] by [in][out] without a copy.
        self.gate = gate.reshape(experts, ffn, hidden).transpose(1, 2).to(torch.bfloat16).contiguous()
        self.up = up.reshape(experts, ffn, hidden).transpose(1, 2).to(torch.bfloat16).contiguous()
        self.down = down.reshape(experts, hidden, ffn).transpose(1, 2).to(torch.bfloat16).contiguous()
        self.experts, self.hidden, self.k = experts, hidden, k

    def forward(self, x):
        probs = torch.softmax(x @ self.router.t(), dim=-1)
        weights, chosen = probs.topk(self.k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        xb = x.to(torch.bfloat16)
        for e in range(self.experts):
            tokens, slots = (chosen == e).nonzero(as_tuple=True)
            if tokens.numel() == 0:
                continue
            rows = xb.index_select(0, tokens)
            hidden = torch.nn.functional.silu(rows @ self.gate[e]) * (rows @ self.up[e])
            out.index_add_(0, tokens, (hidden @ self.down[e]).float() * weights[tokens, slots].unsqueeze(1))
        return out


def main():
    torch.set_num_threads(int(sys.argv[1]))
    torch.set_grad_enabled(False)
    layer, batches = None, []
    print(json.dumps({"ok": True, "torch": torch.__version__, "onednn": torch.backends.mkldnn.is_available()}),
          flush=True)
    for line in sys.stdin:
        try:
            msg = json.loads(line)
            op, answer = msg["op"], {"ok": True}
            if op == "load":
                layer = MoeLayer(msg["path"], msg["experts"], msg["hidden"], msg["ffn"], msg["k"])
            elif op == "inputs":
                data = torch.from_numpy(np.fromfile(msg["path"], dtype=np.float32))
                batches = list(data.reshape(msg["count"], msg["tokens"], layer.hidden))
            elif op == "forward":
                start = time.perf_counter()
                layer.forward(batches[msg["index"]])
                answer["ms"] = (time.perf_counter() - start) * 1e3
            elif op == "output":
                layer.forward(batches[msg["index"]]).numpy().tofile(msg["path"])
            else:
                raise ValueError(f"unknown op {op}")
        except Exception as error:  # the bench reports it and goes on without this peer
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
