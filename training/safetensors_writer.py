"""A minimal safetensors writer (the format: u64 header length, JSON header, then the raw little-endian tensors)."""
import json
import struct

import torch

DTYPES = {torch.float16: 'F16', torch.bfloat16: 'BF16', torch.float32: 'F32'}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} in name order; each tensor keeps its dtype."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        # bf16 has no numpy view in torch 1.13: its bytes are read through an int16 view of the same storage.
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {'dtype': DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header['__metadata__'] = metadata
    encoded = json.dumps(header, separators=(',', ':')).encode()
    encoded += b' ' * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(encoded)))
        f.write(encoded)
        for raw in blobs:
            f.write(raw)
