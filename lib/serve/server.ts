// startServer: the OpenAI-compatible HTTP server on node:http (routes, access log, draining close()).
import * as http from 'http';
import type { AddressInfo } from 'net';
import { DynamoeError } from '../errors';
import { Model } from '../model/model';
import { moeLayers } from '../model/spec';
import { AdmissionQueue } from './admission-queue';
import { GenerationContext, handleGeneration } from './generation-handler';
import { sendError, sendJson } from './http-json';
import { PROMETHEUS_CONTENT_TYPE } from './prometheus';
import { describeError, ServeError } from './serve-error';
import { RequestRecord, resolveServeOptions, ServeOptions } from './serve-options';
import { ServerMetrics } from './server-metrics';

/** A listening server, from {@link startServer}. */
export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:8080` (the OpenAI client's baseURL is this + '/v1'). */
  readonly url: string;
  /** The port listened on (the one chosen when the option was 0). */
  readonly port: number;
  /**
   * Stops the server: new generation requests get 503 at once, waiting ones are refused with 503, running ones
   * finish (after `drainTimeoutMs`, default the server's option, they are aborted: their streams end with an error
   * event). Then it stops listening and closes the connections. Calling it again returns the same promise; a
   * smaller `drainTimeoutMs` shortens the wait. The model is the caller's to dispose afterwards.
   */
  close(options?: { drainTimeoutMs?: number }): Promise<void>;
}

/** Methods each fixed path answers; other paths are 404 (but GET /v1/models/<id>), other methods 405. */
const ROUTES: Readonly<Record<string, 'GET' | 'POST'>> = {
  '/health': 'GET',
  '/metrics': 'GET',
  '/v1/models': 'GET',
  '/v1/chat/completions': 'POST',
  '/v1/completions': 'POST',
};
const MODEL_PATH_PREFIX = '/v1/models/';

/** A percent-encoded path segment, decoded (as written when it is not valid percent-encoding). */
function decodedPathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** How long close() lets clients take the last bytes written before it cuts their connections. */
const CLOSE_GRACE_MS = 2000;

/**
 * Serves `model` over HTTP with OpenAI's API: `POST /v1/chat/completions`, `POST /v1/completions` (streamed as
 * server-sent events with `stream: true`), `GET /v1/models`, plus `GET /health` and `GET /metrics` (Prometheus).
 * A request may choose its own `routing_policy` (any policy form); `usage.experts_per_token` reports what it used.
 * Resolves once listening. The server never disposes the model.
 *
 * @example
 * ```ts
 * const model = await loadModel('./Qwen1.5-MoE-A2.7B');
 * const server = await startServer(model, { port: 0, maxSequences: 2 });
 * const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' });
 * // ...
 * await server.close();
 * model.dispose();
 * ```
 */
export async function startServer(model: Model, options: ServeOptions = {}): Promise<RunningServer> {
  if (!(model instanceof Model) && typeof (model as Model | null)?.generate !== 'function') {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', 'startServer needs a Model (from loadModel or createSyntheticModel)');
  }
  const settings = resolveServeOptions(model, options);
  const admission = new AdmissionQueue(settings.maxSequences, settings.maxQueue);
  const info = model.info;
  const metrics = new ServerMetrics(
    {
      get running() {
        return admission.running;
      },
      get waiting() {
        return admission.waiting;
      },
      maxRunning: settings.maxSequences,
      maxWaiting: settings.maxQueue,
      get stepSequences() {
        return model.disposed ? 0 : model.load.lastStepSequences;
      },
      get stepTokens() {
        return model.disposed ? 0 : model.load.lastStepTokens;
      },
      get kvBlocksReserved() {
        return model.disposed ? 0 : model.load.reservedBlocks;
      },
      get kvBlocks() {
        return model.disposed ? 0 : model.load.poolBlocks;
      },
    },
    moeLayers(model.spec).map((l) => l.layer),
  );
  const context: GenerationContext = {
    model,
    modelId: settings.modelName,
    contextTokens: settings.contextTokens,
    defaultMaxTokens: settings.defaultMaxTokens,
    maxBodyBytes: settings.maxBodyBytes,
    admission,
    metrics,
    controllers: new Set(),
  };
  const created = Math.floor(Date.now() / 1000);
  const modelCard = () => ({
    id: settings.modelName,
    object: 'model',
    created,
    owned_by: 'dynamoe',
    context_length: settings.contextTokens,
    default_routing_policy: info.defaultPolicy,
  });
  let draining = false;

  async function route(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    pathname: string,
    received: number,
  ): Promise<void> {
    const isModelPath = pathname.startsWith(MODEL_PATH_PREFIX);
    const allowed = isModelPath ? 'GET' : ROUTES[pathname];
    if (!allowed) throw new ServeError(404, 'not_found', `no route ${req.method ?? ''} ${pathname}`);
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (method !== allowed) {
      res.setHeader('allow', allowed === 'GET' ? 'GET, HEAD' : allowed);
      throw new ServeError(405, 'method_not_allowed', `${pathname} takes ${allowed}, not ${req.method ?? ''}`);
    }
    if (pathname === '/health') {
      const status = draining ? 'draining' : 'ok';
      sendJson(res, draining ? 503 : 200, {
        status,
        model: settings.modelName,
        active_sequences: admission.running,
        queue_depth: admission.waiting,
        max_sequences: settings.maxSequences,
        max_queue: settings.maxQueue,
      });
    } else if (pathname === '/metrics') {
      const text = metrics.render();
      res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE, 'content-length': String(Buffer.byteLength(text)) });
      res.end(text);
    } else if (pathname === '/v1/models') {
      sendJson(res, 200, { object: 'list', data: [modelCard()] });
    } else if (isModelPath) {
      const id = decodedPathPart(pathname.slice(MODEL_PATH_PREFIX.length));
      if (id !== settings.modelName) {
        throw new ServeError(404, 'model_not_found', `The model '${id}' does not exist`, 'model');
      }
      sendJson(res, 200, modelCard());
    } else {
      // Connections kept alive can still send requests while close() waits for running generations.
      if (draining) throw new ServeError(503, 'server_shutting_down', 'the server is shutting down');
      await handleGeneration(context, pathname === '/v1/chat/completions' ? 'chat' : 'completion', req, res, received);
    }
  }

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const received = performance.now();
    const pathname = (req.url ?? '/').split('?')[0];
    const record: RequestRecord = { method: req.method ?? '', path: pathname, status: 200, ms: 0 };
    // An error event after the response is gone (client reset) must not become an uncaught exception.
    res.on('error', () => undefined);
    try {
      await route(req, res, pathname, received);
      record.status = res.headersSent ? res.statusCode : 499;
    } catch (error) {
      const sent = sendError(res, error);
      record.status = res.headersSent ? res.statusCode : describeError(error).status;
      record.code = sent.code;
      if (sent.code === 'internal_error') record.error = error;
    }
    record.ms = performance.now() - received;
    const endpoint = ROUTES[pathname] ? pathname : pathname.startsWith(MODEL_PATH_PREFIX) ? '/v1/models/:id' : 'other';
    metrics.request(endpoint, record.status);
    if (!settings.log) {
      if (record.error !== undefined) console.error('dynamoe serve: unexpected error:', record.error);
      return;
    }
    try {
      settings.log(record);
    } catch (error) {
      console.error('dynamoe serve: the log callback threw:', error);
    }
  }

  const handlers = new Set<Promise<void>>();
  const server = http.createServer((req, res) => {
    const handled = serve(req, res).finally(() => handlers.delete(handled));
    handlers.add(handled);
  });
  // Malformed HTTP never reaches the handler: answer 400 on the socket instead of letting it error.
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => {
      reject(new DynamoeError('ERR_DYNAMOE_IO', `cannot listen on ${settings.host}:${settings.port}: ${error.message}`));
    };
    server.once('error', onError);
    server.listen(settings.port, settings.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;

  let closing: Promise<void> | undefined;
  let stopped = false; // every handler has ended: the drain timers no longer matter
  let drainTimer: NodeJS.Timeout | undefined;
  let forceTimer: NodeJS.Timeout | undefined;
  const abortRunning = () => {
    const reason = new ServeError(503, 'server_shutting_down', 'the server stopped before this generation finished');
    for (const controller of context.controllers) controller.abort(reason);
  };
  // After the drain timeout running generations are aborted; a grace period later any connection still open (a
  // client that stopped reading, or one still sending its body) is cut, which ends its handler.
  const startDrainTimers = (ms: number) => {
    clearTimeout(drainTimer);
    clearTimeout(forceTimer);
    drainTimer = setTimeout(abortRunning, ms);
    forceTimer = setTimeout(() => server.closeAllConnections(), ms + CLOSE_GRACE_MS);
  };

  function close(closeOptions: { drainTimeoutMs?: number } = {}): Promise<void> {
    const timeout = closeOptions.drainTimeoutMs ?? settings.drainTimeoutMs;
    if (closing) {
      if (closeOptions.drainTimeoutMs !== undefined && !stopped) startDrainTimers(timeout);
      return closing;
    }
    draining = true;
    admission.close(new ServeError(503, 'server_shutting_down', 'the server is shutting down'));
    startDrainTimers(timeout);
    closing = (async () => {
      // Requests still arriving are answered 503 at once; generations end by themselves or by the drain timer.
      while (handlers.size > 0) await Promise.allSettled([...handlers]);
      stopped = true;
      clearTimeout(drainTimer);
      clearTimeout(forceTimer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
      await closed;
      clearTimeout(force);
    })();
    return closing;
  }

  return { url: `http://${host}:${port}`, port, close };
}
