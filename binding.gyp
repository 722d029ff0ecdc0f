{
  # The CPU addon (node-gyp / prebuildify). SIMD kernel files are built in their own static libraries with their
  # own -m flags and only called after a run-time CPU check, so the binary runs on any x86-64 CPU.
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fexceptions", "-fPIC", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "conditions": [
      ["target_arch=='x64'", {"defines": ["DYNAMOE_X86_KERNELS"]}]
    ]
  },
  "targets": [
    {
      "target_name": "dynamoe",
      # One source list for both builds (native/sources.js), found by folder: the core, the CPU backend, the N-API
      # boundary and the stub CUDA backend.
      "sources": ["<!@(node native/sources.js addon cudaStub)"],
      "conditions": [
        ["target_arch=='x64'", {"dependencies": ["dynamoe_kernels_avx2", "dynamoe_kernels_avx512", "dynamoe_kernels_avx512bf16", "dynamoe_kernels_avx512vnni", "dynamoe_kernels_avxvnni"]}],
        # Loads on glibc >= 2.28 like Node: libstdc++/libgcc built in (no GLIBCXX_ needed) and kept private to the
        # addon, the newer glibc symbols they and we reference bound to old versions by native/napi/glibc_compat.cpp.
        ["OS=='linux' and target_arch=='x64'", {
          "sources": ["<!@(node native/sources.js glibcCompat)"],
          "ldflags": ["-static-libstdc++", "-static-libgcc", "-Wl,--exclude-libs,ALL"]
        }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "dynamoe_kernels_avx2",
          "type": "static_library",
          "sources": ["<!@(node native/sources.js avx2)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
        },
        {
          "target_name": "dynamoe_kernels_avx512",
          "type": "static_library",
          "sources": ["<!@(node native/sources.js avx512)"],
          "cflags_cc": ["-Wno-maybe-uninitialized", "-Wno-uninitialized", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"]
        },
        {
          "target_name": "dynamoe_kernels_avx512bf16",
          "type": "static_library",
          "sources": ["<!@(node native/sources.js avx512bf16)"],
          "cflags_cc": ["-Wno-maybe-uninitialized", "-Wno-uninitialized", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mf16c"]
        },
        {
          "target_name": "dynamoe_kernels_avx512vnni",
          "type": "static_library",
          "sources": ["<!@(node native/sources.js avx512vnni)"],
          "cflags_cc": ["-Wno-maybe-uninitialized", "-Wno-uninitialized", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mfma", "-mf16c"]
        },
        {
          "target_name": "dynamoe_kernels_avxvnni",
          "type": "static_library",
          "sources": ["<!@(node native/sources.js avxvnni)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni"]
        }
      ]
    }]
  ]
}
