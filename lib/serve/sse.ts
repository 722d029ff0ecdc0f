// Server-sent events on a ServerResponse: the headers, one `data:` line of JSON per event, backpressure, [DONE].
import type { ServerResponse } from 'http';

/** Starts an event stream: status 200 and the event-stream headers, sent at once. */
export function startEventStream(res: ServerResponse): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no', // proxies such as nginx would otherwise hold the events back
  });
  res.flushHeaders();
}

/** Resolves when the client has taken the data written so far, or has gone away. */
function drained(res: ServerResponse): Promise<void> {
  if (!res.writableNeedDrain || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Sends one event whose data is `payload` as JSON (JSON has no raw newlines, so it is one `data:` line). Waits while
 * the client reads slower than tokens come, so a slow reader holds back its own generation, not server memory.
 */
export async function sendEvent(res: ServerResponse, payload: unknown): Promise<void> {
  if (res.destroyed || res.writableEnded) return;
  res.write(`data: ${JSON.stringify(payload)}\n\n`);
  await drained(res);
}

/** Ends the stream with the `data: [DONE]` sentinel OpenAI clients wait for. */
export function endEventStream(res: ServerResponse): void {
  if (res.destroyed || res.writableEnded) return;
  res.end('data: [DONE]\n\n');
}
