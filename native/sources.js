#!/usr/bin/env node
// The native source list, one for both builds: binding.gyp (node-gyp, prebuildify) and CMakeLists.txt (cmake-js)
// print a group of it with `node native/sources.js <group>...`. Files are found by folder and name, so a new op
// file builds without editing a list: cpu/*_avx2.cpp (and _avx512, _avx512bf16, _avx512vnni, _avxvnni) get their own -m
// flags.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const list = (dir, ext) =>
  fs.readdirSync(path.join(root, dir)).filter((f) => f.endsWith(ext)).sort().map((f) => `${dir}/${f}`);
const isaSuffixes = ['_avx2.cpp', '_avx512.cpp', '_avx512bf16.cpp', '_avx512vnni.cpp', '_avxvnni.cpp'];
const forIsa = (suffix) => list('native/cpu', '.cpp').filter((f) => f.endsWith(suffix));
const GLIBC_COMPAT = 'native/napi/glibc_compat.cpp';
const CUDA_STUB = 'cuda/cuda_unavailable.cpp';

const groups = {
  // The addon without SIMD kernels or a CUDA backend: the N-API boundary, the core and the CPU backend.
  addon: () => [
    ...list('native/napi', '.cpp').filter((f) => f !== GLIBC_COMPAT),
    ...list('native/core', '.cpp'),
    ...list('native/cpu', '.cpp').filter((f) => !isaSuffixes.some((s) => f.endsWith(s))),
  ],
  avx2: () => forIsa('_avx2.cpp'),
  avx512: () => forIsa('_avx512.cpp'),
  avx512bf16: () => forIsa('_avx512bf16.cpp'),
  avx512vnni: () => forIsa('_avx512vnni.cpp'),
  avxvnni: () => forIsa('_avxvnni.cpp'),
  // Linux x64 only: binds newer glibc symbols to old versions.
  glibcCompat: () => [GLIBC_COMPAT],
  // The CPU-only build's CUDA backend, which says why CUDA is unavailable.
  cudaStub: () => [CUDA_STUB],
  cuda: () => [...list('cuda', '.cu'), ...list('cuda', '.cpp').filter((f) => f !== CUDA_STUB)],
};

if (require.main === module) {
  const names = process.argv.slice(2);
  const unknown = names.filter((n) => !(n in groups));
  if (names.length === 0 || unknown.length > 0) {
    console.error(`usage: node native/sources.js <${Object.keys(groups).join('|')}>...`);
    process.exit(2);
  }
  console.log(names.flatMap((n) => groups[n]()).join(' '));
}

module.exports = { groups };
