// A request's prompt as token ids: chat messages through the model's chat template (or a plain fallback), text, ids.
import { ChatMessage, Tokenizer } from '../tokenizer/tokenizer';
import { RequestPrompt } from './parse-request';

/**
 * The chat prompt of a checkpoint without a chat template: one `role: content` line per message, then
 * `assistant:` for the model to continue, encoded with the tokenizer's special tokens (BOS) like a text prompt.
 */
export function plainChatPrompt(messages: ChatMessage[]): string {
  return `${messages.map((m) => `${m.role}: ${m.content}\n`).join('')}assistant:`;
}

/** The token ids of chat messages: the chat template with the generation prompt, else {@link plainChatPrompt}. */
export function chatPromptIds(tokenizer: Tokenizer, messages: ChatMessage[]): Int32Array {
  const rendered = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  // Templates write their own BOS; the fallback is a plain text prompt.
  if (rendered !== null) return tokenizer.encode(rendered, { addSpecialTokens: false });
  return tokenizer.encode(plainChatPrompt(messages));
}

/** The token ids a request's prompt stands for (a text prompt gets the tokenizer's special tokens, as in generate). */
export function promptIds(tokenizer: Tokenizer, prompt: RequestPrompt): Int32Array | number[] {
  if (prompt.kind === 'messages') return chatPromptIds(tokenizer, prompt.messages);
  if (prompt.kind === 'text') return tokenizer.encode(prompt.text);
  return prompt.tokens;
}
