// @ts-check
// Preloaded by run.sh (node --require) before Jazzer.js. Jazzer.js 4's prebuilt libFuzzer addon for linux-x64 was
// linked against glibc 2.38 / GCC 13, so on older systems (Debian 12: glibc 2.36, GLIBCXX_3.4.30) dlopen refuses it.
// It needs only three things those systems lack:
//   - __isoc23_strtol / __isoc23_strtoul (GLIBC_2.38): the C23 strtol/strtoul, which differ from the classic ones
//     only in also accepting a "0b" prefix;
//   - GLIBCXX_3.4.32, for _ZSt21ios_base_library_initv, a symbol that nothing relocates against (GCC 13 <iostream>
//     only references it so that linking pulls in the stream initialisation; older libstdc++ does that itself).
// When (and only when) loading the addon fails for a missing version, this loads a copy whose ELF dynamic section is
// patched to ask for the classic strtol/strtoul and for versions the system has. Everywhere else it does nothing.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

/** Version requirements rewritten to one the same library has had since its first versioned release. */
const VERSION_FALLBACKS = { 'GLIBC_2.38': 'GLIBC_2.2.5', 'GLIBCXX_3.4.32': 'GLIBCXX_3.4' };
/** Imported symbols renamed to the classic function: the new name ends with the old one, so only st_name moves. */
const SYMBOL_FALLBACKS = { __isoc23_strtol: 'strtol', __isoc23_strtoul: 'strtoul' };

const SHT_DYNSYM = 11;
const SHT_GNU_VERNEED = 0x6ffffffe;

/** @param {Buffer} elf @param {number} offset */
function cString(elf, offset) {
  return elf.toString('latin1', offset, elf.indexOf(0, offset));
}

/** ELF64 little-endian section headers, by type. @param {Buffer} elf */
function sections(elf) {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const entsize = elf.readUInt16LE(0x3a);
  const count = elf.readUInt16LE(0x3c);
  return Array.from({ length: count }, (_, i) => {
    const at = shoff + i * entsize;
    return {
      type: elf.readUInt32LE(at + 4),
      offset: Number(elf.readBigUInt64LE(at + 24)),
      size: Number(elf.readBigUInt64LE(at + 32)),
      link: elf.readUInt32LE(at + 40),
      info: elf.readUInt32LE(at + 44),
    };
  });
}

/** Returns a patched copy of the addon's bytes (see the header comment). @param {Buffer} original */
function patchAddon(original) {
  const elf = Buffer.from(original);
  const all = sections(elf);
  const verneed = all.find((s) => s.type === SHT_GNU_VERNEED);
  const dynsym = all.find((s) => s.type === SHT_DYNSYM);
  if (verneed === undefined || dynsym === undefined) throw new Error('no .gnu.version_r or .dynsym section');
  const dynstr = all[verneed.link].offset;
  // Every version requirement (vernaux entry), with its name, so fallbacks can borrow an existing name and hash.
  const aux = [];
  for (let need = verneed.offset, n = 0; n < verneed.info; n++) {
    const count = elf.readUInt16LE(need + 2);
    for (let at = need + elf.readUInt32LE(need + 8), i = 0; i < count; i++) {
      aux.push({ at, file: cString(elf, dynstr + elf.readUInt32LE(need + 4)), name: cString(elf, dynstr + elf.readUInt32LE(at + 8)) });
      at += elf.readUInt32LE(at + 12);
    }
    need += elf.readUInt32LE(need + 12);
  }
  for (const entry of aux) {
    const fallback = VERSION_FALLBACKS[/** @type {keyof VERSION_FALLBACKS} */ (entry.name)];
    if (fallback === undefined) continue;
    const donor = aux.find((a) => a.file === entry.file && a.name === fallback);
    if (donor === undefined) throw new Error(`${entry.file}: no ${fallback} requirement to fall back to`);
    elf.writeUInt32LE(elf.readUInt32LE(donor.at), entry.at); // vna_hash
    elf.writeUInt32LE(elf.readUInt32LE(donor.at + 8), entry.at + 8); // vna_name
  }
  const symbols = all[dynsym.link].offset;
  for (let at = dynsym.offset; at < dynsym.offset + dynsym.size; at += 24) {
    const name = cString(elf, symbols + elf.readUInt32LE(at));
    const fallback = SYMBOL_FALLBACKS[/** @type {keyof SYMBOL_FALLBACKS} */ (name)];
    if (fallback === undefined) continue;
    if (!name.endsWith(fallback)) throw new Error(`${name} does not end with ${fallback}`);
    elf.writeUInt32LE(elf.readUInt32LE(at) + name.length - fallback.length, at); // st_name: point at the suffix
  }
  return elf;
}

/** The patched copy's path (made once per original, in the temp directory). @param {string} file */
function patchedCopy(file) {
  const original = fs.readFileSync(file);
  const digest = crypto.createHash('sha256').update(original).digest('hex').slice(0, 16);
  const copy = path.join(os.tmpdir(), `jazzer-fuzzer-compat-${digest}.node`);
  if (!fs.existsSync(copy)) {
    const partial = `${copy}.${process.pid}`;
    fs.writeFileSync(partial, patchAddon(original));
    fs.renameSync(partial, copy);
  }
  return copy;
}

const dlopen = process.dlopen;
process.dlopen = function dlopenWithFallback(module, filename, ...flags) {
  try {
    return dlopen.call(this, module, filename, ...flags);
  } catch (error) {
    const missingVersion = /version `GLIBC(XX)?_[\d.]+' not found/.test(String(error && error.message));
    if (!missingVersion || !/@jazzer\.js[\\/]fuzzer[\\/]prebuilds[\\/]fuzzer-linux-x64\.node$/.test(filename)) throw error;
    return dlopen.call(this, module, patchedCopy(filename), ...flags);
  }
};
