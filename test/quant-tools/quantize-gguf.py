#!/usr/bin/env python3
"""Quantizes a GGUF file with llama.cpp's own llama_model_quantize (node-llama-cpp's CPU libraries).

Usage: quantize-gguf.py LIBDIR IN.gguf OUT.gguf FTYPE, FTYPE a llama_ftype name without LLAMA_FTYPE_MOSTLY_
(Q4_0, Q8_0, Q4_K_M, IQ4_XS, MXFP4_MOE, ...).
"""
import ctypes
import glob
import os
import sys

# enum llama_ftype (llama.h)
FTYPES = {
    "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15,
    "Q5_K_M": 17, "Q6_K": 18, "IQ4_NL": 25, "IQ4_XS": 30, "MXFP4_MOE": 38,
}


class QuantizeParams(ctypes.Structure):
    # llama_model_quantize_params starts with int32 nthread and enum llama_ftype ftype; the rest (output types,
    # flags, pointers) is kept as returned by llama_model_quantize_default_params. 256 bytes covers the struct.
    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int32), ("rest", ctypes.c_uint8 * 248)]


def load_llama(lib_dir):
    # libllama needs ggml's symbols global: load ggml-base and ggml first, with RTLD_GLOBAL.
    ctypes.CDLL(os.path.join(lib_dir, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(glob.glob(os.path.join(lib_dir, "libggml.v*.so"))[0], mode=ctypes.RTLD_GLOBAL)
    return ctypes.CDLL(glob.glob(os.path.join(lib_dir, "libllama.v*.so"))[0])


def main(argv):
    if len(argv) != 5 or argv[4] not in FTYPES:
        sys.exit(__doc__ + "FTYPE one of " + ", ".join(FTYPES))
    lib_dir, source, target, ftype = argv[1:]
    llama = load_llama(lib_dir)
    llama.llama_backend_init()
    llama.llama_model_quantize_default_params.restype = QuantizeParams
    llama.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
    llama.llama_model_quantize.restype = ctypes.c_uint32
    params = llama.llama_model_quantize_default_params()
    params.nthread = 1  # the tiny fixtures gain nothing from more, and tests share the machine
    params.ftype = FTYPES[ftype]
    status = llama.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params))
    if status != 0:
        sys.exit(f"llama_model_quantize({source}, {target}, {ftype}) returned {status}")


if __name__ == "__main__":
    main(sys.argv)
