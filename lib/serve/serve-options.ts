// The options of startServer: their documentation, defaults and checks.
import * as path from 'path';
import { Model } from '../model/model';
import { integerOption, typeError } from '../validate';
import { DEFAULT_MAX_BODY_BYTES } from './http-json';

/** One access-log record per request, given to {@link ServeOptions.log} when the request ends. */
export interface RequestRecord {
  method: string;
  /** The path, without the query string. */
  path: string;
  /** HTTP status sent (499: the client went away first). A stream that failed after its 200 logs 200. */
  status: number;
  /** The error code sent, when an error was. */
  code?: string;
  /** Milliseconds from the request's arrival to its end. */
  ms: number;
  /** An unexpected error (a bug or a system failure), whose details the client was not sent. */
  error?: unknown;
}

/** Options of {@link startServer}. */
export interface ServeOptions {
  /** Interface to listen on (default '127.0.0.1'; '0.0.0.0' for every IPv4 interface). */
  host?: string;
  /** TCP port (default 8080; 0 picks a free one, see {@link RunningServer.url}). */
  port?: number;
  /** The model id of /v1/models and of responses; requests naming another get 404 (default: the checkpoint's basename). */
  modelName?: string;
  /**
   * Generations running at once, each its own sequence, batched into the model's steps (default: the model's
   * maxSequences). More than the model's own limit wait in the model's queue.
   */
  maxSequences?: number;
  /** Requests waiting for a sequence slot, first come first served; beyond it, 429 (default 64). */
  maxQueue?: number;
  /** Largest request body; larger ones get 413 (default 1 MiB). */
  maxBodyBytes?: number;
  /** Most positions (prompt + max_tokens) one request may use (default and maximum: the model's context). */
  contextTokens?: number;
  /**
   * max_tokens of a chat completion that gives none (default 1024), capped by the room the context leaves. Each
   * sequence's KV cache is sized for prompt + max_tokens when it starts, so "the rest of the context" would be a
   * costly default. Text completions default to OpenAI's 16.
   */
  defaultMaxTokens?: number;
  /** How long close() lets running generations finish before it aborts them (default 30000 ms). */
  drainTimeoutMs?: number;
  /**
   * Called once per request as it ends. Without it, unexpected errors are written to stderr (console.error); with
   * it they come in {@link RequestRecord.error} only.
   */
  log?: (record: RequestRecord) => void;
}

/** Defaults of {@link ServeOptions}. */
export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  maxQueue: 64,
  maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
  defaultMaxTokens: 1024,
  drainTimeoutMs: 30000,
};

export type ResolvedServeOptions = Required<Omit<ServeOptions, 'log'>> & Pick<ServeOptions, 'log'>;

/** The model id a checkpoint is served under by default: the last part of its path. */
export function defaultModelName(model: Model): string {
  return path.basename(model.source) || model.source;
}

/** Options with their defaults, checked (ERR_DYNAMOE_TYPE / ERR_DYNAMOE_VALUE). */
export function resolveServeOptions(model: Model, options: ServeOptions): ResolvedServeOptions {
  if (typeof options !== 'object' || options === null) typeError('options', 'an object', options);
  const maxContext = model.spec.maxContext;
  const host = options.host ?? SERVE_DEFAULTS.host;
  if (typeof host !== 'string' || host === '') typeError('host', 'a non-empty string', host);
  const modelName = options.modelName ?? defaultModelName(model);
  if (typeof modelName !== 'string' || modelName === '') typeError('modelName', 'a non-empty string', modelName);
  if (options.log !== undefined && typeof options.log !== 'function') typeError('log', 'a function', options.log);
  return {
    host,
    port: integerOption(options.port, 'port', SERVE_DEFAULTS.port, 0, 65535),
    modelName,
    maxSequences: integerOption(options.maxSequences, 'maxSequences', model.info.limits.maxSequences, 1),
    maxQueue: integerOption(options.maxQueue, 'maxQueue', SERVE_DEFAULTS.maxQueue, 0),
    maxBodyBytes: integerOption(options.maxBodyBytes, 'maxBodyBytes', SERVE_DEFAULTS.maxBodyBytes, 1),
    contextTokens: integerOption(options.contextTokens, 'contextTokens', maxContext, 2, maxContext),
    defaultMaxTokens: integerOption(options.defaultMaxTokens, 'defaultMaxTokens', SERVE_DEFAULTS.defaultMaxTokens, 1),
    drainTimeoutMs: integerOption(options.drainTimeoutMs, 'drainTimeoutMs', SERVE_DEFAULTS.drainTimeoutMs, 0),
    log: options.log,
  };
}
