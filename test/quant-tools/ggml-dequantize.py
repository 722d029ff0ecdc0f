#!/usr/bin/env python3
"""Dequantizes raw GGML blocks with llama.cpp's own dequantize_row_* (from node-llama-cpp's libggml-base.so).

Usage: ggml-dequantize.py LIBDIR JOB [JOB ...], each JOB TYPE:COUNT:IN:OUT -- TYPE a ggml type name as in
dequantize_row_<type> (q8_0, q4_K, iq4_xs, mxfp4, ...), COUNT the elements, IN the blocks, OUT the float32 values
(little-endian, what the C function writes).
"""
import ctypes
import os
import sys


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    ggml_base = ctypes.CDLL(os.path.join(argv[1], "libggml-base.so"))
    for job in argv[2:]:
        type_name, count, source, target = job.split(":", 3)
        count = int(count)
        dequantize = getattr(ggml_base, "dequantize_row_" + type_name)
        # void dequantize_row_X(const block_X * x, float * y, int64_t k)
        dequantize.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64]
        dequantize.restype = None
        with open(source, "rb") as f:
            blocks = f.read()
        values = (ctypes.c_float * count)()
        dequantize(blocks, values, count)
        with open(target, "wb") as f:
            f.write(bytes(values))


if __name__ == "__main__":
    main(sys.argv)
