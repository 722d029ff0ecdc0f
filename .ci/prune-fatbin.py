#!/usr/bin/env python3
"""Zeroes the GPU code of every architecture but one in a CUDA shared library's fat binaries, in place.

  prune-fatbin.py LIB.so 90

Keeps the sm_90 machine code and the compute_90 PTX (the entries a Hopper GPU can load; llama.cpp's CUDA prebuilt
ships compute_90 PTX and no sm_90 code) and overwrites the other entries' payloads with zeros: the file keeps its
size and layout, and the zeros compress to nothing, so the library fits a device call's carry. A GPU of another
architecture cannot run the pruned file.
"""
import struct
import sys

MAGIC = struct.pack("<I", 0xBA55ED50)


def prune(path, keep):
    data = bytearray(open(path, "rb").read())
    kept = zeroed = 0
    pos = 0
    while True:
        at = data.find(MAGIC, pos)
        if at < 0:
            break
        version, header, size = struct.unpack_from("<HHQ", data, at + 4)
        if version != 1 or header != 16:
            pos = at + 4
            continue
        entry, end = at + header, at + header + size
        while entry < end:
            # Entry header: kind (1 PTX, 2 ELF), version, header size, payload size, ..., arch at byte 28.
            _, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            start = entry + entry_header
            if arch == keep:
                kept += payload
            else:
                data[start:start + payload] = bytes(payload)
                zeroed += payload
            entry = start + payload
        pos = end
    if kept == 0:
        sys.exit(f"prune-fatbin: {path} has no code for architecture {keep}; left unchanged")
    open(path, "wb").write(data)
    print(f"prune-fatbin: {path}: kept {kept >> 20} MiB for {keep}, zeroed {zeroed >> 20} MiB")


if __name__ == "__main__":
    prune(sys.argv[1], int(sys.argv[2]))
