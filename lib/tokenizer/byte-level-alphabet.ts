// GPT-2's byte-level alphabet: byte-level BPE vocabularies spell every byte as one printable character.

/** The character standing for each byte 0..255 in byte-level BPE tokens (GPT-2, Qwen, OLMoE tokenizers). */
export function byteLevelAlphabet(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) map[b] = String.fromCharCode(printable(b) ? b : next++);
  return map;
}
