// @ts-check
// Fuzz target: tokenizers built from model files, then used. A GGUF file goes through openGguf and
// tokenizerFromGgufMetadata (lib/tokenizer/tokenizer-json.ts); a multi-file input (see harness.joinFiles) is a Hugging Face
// tokenizer directory for loadTokenizerFromDirectory, its files in the order of TOKENIZER_FILES (an empty or missing
// part: no such file). Each tokenizer then encodes, decodes (whole and streamed) and renders its chat template.
'use strict';
const path = require('path');
const { openGguf } = require('../../dist/lib/formats/gguf');
const { loadTokenizerFromDirectory, tokenizerFromGgufMetadata } = require('../../dist/lib/tokenizer/tokenizer');
const { finding, fuzzTarget, isGguf, settle, splitFiles } = require('./harness');

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'chat_template.jinja', 'chat_template.json'];
const GGUF_FILE = 'model.gguf';

// Special-token texts of the seed tokenizers, multi-byte characters, an emoji (byte fallback) and digits.
const SAMPLE = 'Hello world! héllo <|im_end|> <s> </s> 🙂 12345\n\tend';
const CONVERSATION = [
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello' },
  { role: 'user', content: 'Bye' },
];

/** @param {Buffer} data */
function tokenizerFiles(data) {
  if (isGguf(data)) return { [GGUF_FILE]: data };
  /** @type {Record<string, Buffer>} */
  const files = {};
  splitFiles(data).slice(0, TOKENIZER_FILES.length).forEach((bytes, i) => {
    if (bytes.length > 0) files[TOKENIZER_FILES[i]] = bytes;
  });
  return files;
}

/** @param {string} file */
async function ggufTokenizer(file) {
  const gguf = await openGguf(file);
  await gguf.close(); // only the metadata is needed
  return tokenizerFromGgufMetadata(gguf.metadata, file);
}

/** Uses the tokenizer as generation does; ids it hands out must lie in its vocabulary. */
async function exercise(/** @type {import('../../dist/lib/tokenizer/tokenizer').Tokenizer} */ tokenizer) {
  const inVocabulary = (/** @type {number} */ id) => Number.isInteger(id) && id >= 0 && id < tokenizer.vocabSize;
  const special = [...(tokenizer.bosTokenId === null ? [] : [tokenizer.bosTokenId]), ...tokenizer.eosTokenIds];
  if (!special.every(inVocabulary)) finding(`special token ids [${special}] outside the vocabulary of ${tokenizer.vocabSize}`);
  const ids = await settle(() => tokenizer.encode(SAMPLE));
  if (ids !== undefined) {
    if (!Array.from(ids).every(inVocabulary)) finding(`encode gave ids [${ids}] outside the vocabulary of ${tokenizer.vocabSize}`);
    await settle(() => tokenizer.decode(ids));
    await settle(() => tokenizer.decode(ids, { skipSpecialTokens: true }));
    await settle(() => {
      const stream = tokenizer.createStreamDecoder();
      return ids.reduce((text, id) => text + stream.push(id), '') + stream.flush();
    });
  }
  await settle(() => tokenizer.decode([0, tokenizer.vocabSize - 1]));
  await settle(() => tokenizer.applyChatTemplate(CONVERSATION, { addGenerationPrompt: true }));
  return tokenizer;
}

module.exports.fuzz = fuzzTarget({
  files: tokenizerFiles,
  read: async (dir, files) =>
    exercise(files[GGUF_FILE] ? await ggufTokenizer(path.join(dir, GGUF_FILE)) : await loadTokenizerFromDirectory(dir)),
});
module.exports.TOKENIZER_FILES = TOKENIZER_FILES;
