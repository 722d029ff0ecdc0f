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
      "sources": [
        "native/addon.cpp",
        "native/cuda_unavailable.cpp",
        "native/graph_node_reader.cpp",
        "native/js_args.cpp",
        "native/kv_session_binding.cpp",
        "native/model_graph_binding.cpp",
        "native/moe_layer_binding.cpp",
        "native/moe_layer_sources.cpp",
        "native/route_binding.cpp",
        "native/router_losses_binding.cpp",
        "native/routing_policy.cpp",
        "native/runtime_binding.cpp",
        "native/thread_pool.cpp",
        "native/cpu/combine.cpp",
        "native/cpu/cpu_features.cpp",
        "native/cpu/expert_plan.cpp",
        "native/cpu/grouped_gemm.cpp",
        "native/cpu/model_graph.cpp",
        "native/cpu/moe_layer.cpp",
        "native/cpu/op_add.cpp",
        "native/cpu/op_attention.cpp",
        "native/cpu/op_dense_mlp.cpp",
        "native/cpu/op_embedding.cpp",
        "native/cpu/op_linear.cpp",
        "native/cpu/op_moe.cpp",
        "native/cpu/op_rms_norm.cpp",
        "native/cpu/op_rope.cpp",
        "native/cpu/packed_matrix.cpp",
        "native/cpu/roofline.cpp",
        "native/cpu/router_losses.cpp",
        "native/cpu/router_stats.cpp",
        "native/cpu/routing.cpp",
        "native/cpu/tile_kernels.cpp",
        "native/cpu/thread_scratch.cpp",
        "native/cpu/tile_kernels_scalar.cpp"
      ],
      "conditions": [
        ["target_arch=='x64'", {"dependencies": ["dynamoe_kernels_avx2", "dynamoe_kernels_avx512", "dynamoe_kernels_avx512bf16"]}],
        # Loads on glibc >= 2.28 like Node: libstdc++/libgcc built in (no GLIBCXX_ needed) and kept private to the
        # addon, the newer glibc symbols they and we reference bound to old versions by native/glibc_compat.cpp.
        ["OS=='linux' and target_arch=='x64'", {
          "sources": ["native/glibc_compat.cpp"],
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
          "sources": ["native/cpu/tile_kernels_avx2.cpp", "native/cpu/fma_probe_avx2.cpp"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
        },
        {
          "target_name": "dynamoe_kernels_avx512",
          "type": "static_library",
          "sources": ["native/cpu/tile_kernels_avx512.cpp", "native/cpu/fma_probe_avx512.cpp"],
          "cflags_cc": ["-Wno-maybe-uninitialized", "-Wno-uninitialized", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"]
        },
        {
          "target_name": "dynamoe_kernels_avx512bf16",
          "type": "static_library",
          "sources": ["native/cpu/tile_kernels_avx512bf16.cpp", "native/cpu/dot_probe_avx512bf16.cpp"],
          "cflags_cc": ["-Wno-maybe-uninitialized", "-Wno-uninitialized", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mf16c"]
        }
      ]
    }]
  ]
}
