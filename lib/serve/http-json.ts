// JSON over node:http: reading a size-limited request body, answering JSON bodies and OpenAI error objects.
import type { IncomingMessage, ServerResponse } from 'http';
import { describeError, ServeError } from './serve-error';

/** Default largest request body read, in bytes (1 MiB): a prompt longer than any context fits well below it. */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

// An oversized body is read to its end and dropped, so the client sees the 413 instead of a reset connection;
// past this many bytes more the connection is cut instead.
const DISCARD_LIMIT_BYTES = 64 << 20;

/** The client went away (status 499, nginx's "client closed request"): nobody is left to answer. */
export function clientGone(): ServeError {
  return new ServeError(499, 'client_closed_request', 'the client closed the connection before the end of the request');
}

/**
 * Reads the whole body and parses it as JSON: 413 when it passes `limit` bytes, 400 (ERR_DYNAMOE_FORMAT) when it
 * is not JSON, 499 ({@link clientGone}) when the client disconnects first.
 */
export function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    const tooLarge = () => new ServeError(413, 'request_too_large', `the request body exceeds ${limit} bytes`);
    const chunks: Buffer[] = [];
    let bytes = 0;
    let oversized = Number.isFinite(declared) && declared > limit;
    let settled = false;
    const settle = (action: () => void) => {
      if (settled) return;
      settled = true;
      action();
    };
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limit) {
        oversized = true;
        chunks.length = 0;
        if (bytes > limit + DISCARD_LIMIT_BYTES) {
          settle(() => reject(tooLarge()));
          req.destroy();
        }
        return;
      }
      if (!oversized) chunks.push(chunk);
    });
    req.on('end', () => {
      if (oversized) return settle(() => reject(tooLarge()));
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        const json: unknown = JSON.parse(text);
        settle(() => resolve(json));
      } catch (error) {
        const message = `the body is not valid JSON: ${(error as Error).message}`;
        settle(() => reject(new ServeError(400, 'ERR_DYNAMOE_FORMAT', message)));
      }
    });
    // Without these a client gone mid-body ('error' ECONNRESET, or only 'close') would leave the handler waiting.
    req.on('error', () => settle(() => reject(clientGone())));
    req.on('close', () => {
      if (!req.complete) settle(() => reject(clientGone()));
    });
  });
}

/** Sends `body` as JSON with `status`, unless a response was already sent or its client is gone. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** Answers an error as an OpenAI error object; returns the status and code sent. */
export function sendError(res: ServerResponse, error: unknown): { status: number; code: string } {
  const { status, body } = describeError(error);
  const headers: Record<string, string> = {};
  if (status === 429 || status === 503) headers['retry-after'] = '1';
  // After a 413 the rest of the connection cannot be trusted to be a next request.
  if (status === 413) headers.connection = 'close';
  sendJson(res, status, body, headers);
  return { status, code: body.error.code };
}
