// The server's dynamoe_* metrics for GET /metrics: requests, tokens, queue, time to first token, speed, experts/token.
import { RoutingStats } from '../model/routing-stats';
import { Counter, Gauge, Histogram, Registry } from './prometheus';

/** How a generation ended, as dynamoe_generations_total counts it. */
export type GenerationOutcome = 'stop' | 'length' | 'aborted' | 'error';

/** What the metrics read from the admission queue at each scrape. */
export interface QueueState {
  readonly running: number;
  readonly waiting: number;
  readonly maxRunning: number;
  readonly maxWaiting: number;
  /** Sequences and tokens of the model's last step, and its KV pool blocks reserved and in all. */
  readonly stepSequences: number;
  readonly stepTokens: number;
  readonly kvBlocksReserved: number;
  readonly kvBlocks: number;
}

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const RATE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
const EXPERTS_BUCKETS = [1, 1.25, 1.5, 2, 2.5, 3, 4, 6, 8, 12, 16, 32, 64];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter;
  readonly generations: Counter;
  readonly promptTokens: Counter;
  readonly completionTokens: Counter;
  readonly timeToFirstToken: Histogram;
  readonly decodeRate: Histogram;
  readonly expertsPerToken: Histogram;
  readonly routedTokens: Counter;
  readonly routedExperts: Counter;

  constructor(queue: QueueState, moeLayers: number[]) {
    const r = this.registry;
    const requestsHelp = 'HTTP requests answered, by endpoint and status code.';
    this.requests = r.add(new Counter('dynamoe_requests_total', requestsHelp, []));
    this.generations = r.add(
      new Counter(
        'dynamoe_generations_total',
        'Generations ended, by outcome: stop (end token or stop string), length (max_tokens), ' +
          'aborted (client gone or shutdown), error.',
        (['stop', 'length', 'aborted', 'error'] as const).map((outcome) => ({ outcome })),
      ),
    );
    this.promptTokens = r.add(new Counter('dynamoe_prompt_tokens_total', 'Prompt tokens of admitted generations.'));
    this.completionTokens = r.add(new Counter('dynamoe_completion_tokens_total', 'Tokens generated.'));
    const activeHelp = 'Generations running now (each holds a sequence slot).';
    r.add(new Gauge('dynamoe_active_sequences', activeHelp, () => queue.running));
    r.add(new Gauge('dynamoe_queue_depth', 'Requests waiting for a sequence slot.', () => queue.waiting));
    r.add(new Gauge('dynamoe_max_sequences', 'Sequence slots (--max-sequences).', () => queue.maxRunning));
    r.add(new Gauge('dynamoe_max_queue', 'Most requests that may wait (--max-queue).', () => queue.maxWaiting));
    r.add(
      new Gauge(
        'dynamoe_batch_size',
        'Sequences in the last native model step (continuous batching: decodes and prompt chunks together).',
        () => queue.stepSequences,
      ),
    );
    r.add(new Gauge('dynamoe_step_tokens', 'Token rows of the last native model step.', () => queue.stepTokens));
    r.add(
      new Gauge('dynamoe_kv_blocks_reserved', 'KV pool blocks reserved by running sequences.', () => queue.kvBlocksReserved),
    );
    r.add(new Gauge('dynamoe_kv_blocks', 'KV pool blocks in all.', () => queue.kvBlocks));
    this.timeToFirstToken = r.add(
      new Histogram(
        'dynamoe_time_to_first_token_seconds',
        'From the request arriving to its first generated token (queue wait and prefill included).',
        SECONDS_BUCKETS,
      ),
    );
    this.decodeRate = r.add(
      new Histogram(
        'dynamoe_decode_tokens_per_second',
        'Decode speed of each finished generation (tokens after the first).',
        RATE_BUCKETS,
      ),
    );
    this.expertsPerToken = r.add(
      new Histogram(
        'dynamoe_experts_per_token',
        'Mean experts per token of each generation over its MoE layers (prompt and generated tokens).',
        EXPERTS_BUCKETS,
      ),
    );
    const layers = moeLayers.map((layer) => ({ layer: String(layer) }));
    this.routedTokens = r.add(new Counter('dynamoe_routed_tokens_total', 'Tokens routed, by MoE layer.', layers));
    this.routedExperts = r.add(
      new Counter(
        'dynamoe_routed_experts_total',
        'Experts run for routed tokens, by MoE layer (divide by dynamoe_routed_tokens_total for experts per token).',
        layers,
      ),
    );
  }

  /** One answered request; `endpoint` is a known route or 'other'. */
  request(endpoint: string, status: number): void {
    this.requests.inc({ endpoint, status: String(status) });
  }

  /** A generation ended: its outcome and the routing of the steps it ran (also when aborted). */
  generationEnded(outcome: GenerationOutcome, stats: RoutingStats | undefined): void {
    this.generations.inc({ outcome });
    if (!stats || stats.tokens === 0) return;
    this.expertsPerToken.observe(stats.expertsPerToken);
    for (const layer of stats.layers) {
      const labels = { layer: String(layer.layer) };
      this.routedTokens.inc(labels, layer.tokens);
      this.routedExperts.inc(labels, Math.round(layer.expertsPerToken * layer.tokens));
    }
  }

  /** Renders every metric in the Prometheus text format. */
  render(): string {
    return this.registry.render();
  }
}
