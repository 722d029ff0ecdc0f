#!/usr/bin/env python3
"""PyTorch + Hugging Face transformers peer of the GPU whole-model bench (bench/gpu-model-bench.ts).

  torch-model-peer.py --probe
      The GPU's two ceilings, measured: device-to-device copy bandwidth (bytes read plus written) and a bf16
      8192^3 matmul. Prints one JSON line.
  torch-model-peer.py --model DIR --prefill 512,2048,8192 --decode 64 --decode-prompt 512 --rounds 3
      Loads DIR (config.json + model.safetensors; no tokenizer: token ids are fed directly) with
      AutoModelForCausalLM in bfloat16 on cuda with sdpa attention, then times each prefill from an empty cache
      (logits of the last position only) and DECODE single-token steps after a DECODE_PROMPT prefill (each step's
      logits copied to the host, as a generator reads them). Round 0 warms up; medians of the other rounds. Prints
      one JSON line. `--device cpu` runs it on the CPU (a check of the script and the checkpoint, not a measurement).
Token ids are the bench's: prompt i = 3 + (i * 7919) % (vocab - 3), decode step i = 3 + (i * 104729 + 11) % (vocab - 3).
"""
import argparse
import json
import statistics
import sys
import time


def prompt_ids(n, vocab):
    return [3 + (i * 7919) % (vocab - 3) for i in range(n)]


def decode_ids(n, vocab):
    return [3 + (i * 104729 + 11) % (vocab - 3) for i in range(n)]


def probe(torch):
    dev = torch.device("cuda")
    n = 1 << 31  # 4 GiB of bf16 per buffer
    x = torch.ones(n, dtype=torch.bfloat16, device=dev)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(10):
        start.record()
        y.copy_(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    bandwidth = 2 * x.numel() * x.element_size() / min(times) / 1e9
    del x, y
    m = 8192
    a = torch.randn(m, m, dtype=torch.bfloat16, device=dev)
    b = torch.randn(m, m, dtype=torch.bfloat16, device=dev)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    tflops = 2 * m ** 3 / statistics.median(times) / 1e12
    return {"device": torch.cuda.get_device_name(0), "bandwidthGBps": bandwidth, "matmulTflops": tflops}


def load(torch, directory, device):
    import transformers
    from transformers import AutoModelForCausalLM

    kwargs = {"device_map": device, "attn_implementation": "sdpa"}
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16, **kwargs)
    except TypeError:
        # transformers before 4.56 names it torch_dtype.
        model = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.bfloat16, **kwargs)
    model.eval()
    return model, transformers.__version__


def forward(model, ids, past=None):
    # logits_to_keep=1: the last position's logits only, as a generator needs (dynamoe and llama.cpp are asked the same).
    try:
        return model(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=1)
    except TypeError:
        return model(input_ids=ids, past_key_values=past, use_cache=True, num_logits_to_keep=1)


def run_model(torch, args):
    t0 = time.perf_counter()
    model, transformers_version = load(torch, args.model, args.device)
    load_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    dev = torch.device(args.device)
    cuda = args.device == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    prefills = [int(t) for t in args.prefill.split(",") if t]
    timed = {t: [] for t in prefills}
    decode_times = []
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for round_ in range(args.rounds + 1):
            for t in prefills:
                ids = torch.tensor([prompt_ids(t, vocab)], device=dev)
                sync()
                start = time.perf_counter()
                out = forward(model, ids)
                out.logits[:, -1].float().cpu()
                ms = (time.perf_counter() - start) * 1e3
                del out
                if round_ > 0:
                    timed[t].append(ms)
            ids = torch.tensor([prompt_ids(args.decode_prompt, vocab)], device=dev)
            out = forward(model, ids)
            past = out.past_key_values
            steps = [torch.tensor([[i]], device=dev) for i in decode_ids(args.decode, vocab)]
            sync()
            start = time.perf_counter()
            for step in steps:
                out = forward(model, step, past)
                past = out.past_key_values
                out.logits[:, -1].float().cpu()
            ms = (time.perf_counter() - start) * 1e3
            del out, past
            if round_ > 0:
                decode_times.append(ms)
            print(f"torch peer: round {round_} done", file=sys.stderr, flush=True)
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": transformers_version,
        "loadSeconds": load_s,
        "prefillMs": {str(t): statistics.median(v) for t, v in timed.items()},
        "decodeMs": statistics.median(decode_times),
        "decodeSteps": args.decode,
        "peakAllocatedBytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peakReservedBytes": torch.cuda.max_memory_reserved() if cuda else None,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--prefill", default="512,2048,8192")
    parser.add_argument("--decode", type=int, default=64)
    parser.add_argument("--decode-prompt", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    try:
        import torch
    except ImportError as error:
        print(json.dumps({"error": f"no torch: {error}"}), flush=True)
        return
    if (args.probe or args.device == "cuda") and not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}), flush=True)
        return
    try:
        result = probe(torch) if args.probe else run_model(torch, args)
    except Exception as error:  # the bench prints the reason and goes on without this peer
        result = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
