// Typed, checked access to a model's configuration (config.json or GGUF metadata), naming the source in errors.
import { DynamoeError } from '../errors';

/** Most decoder layers a configuration may declare (real models have a few hundred at most). */
export const MAX_LAYERS = 4096;

/** Reads values of a configuration object; every failure names the source and the key. */
export class ConfigReader {
  constructor(
    private readonly values: ReadonlyMap<string, unknown>,
    /** Where the values came from, for error messages (a file path). */
    readonly source: string,
  ) {}

  static fromJson(json: Record<string, unknown>, source: string): ConfigReader {
    return new ConfigReader(new Map(Object.entries(json)), source);
  }

  /** The object under `key` (a text_config, a rope_scaling), read the same way; ERR_DYNAMOE_FORMAT if not an object. */
  nested(key: string): ConfigReader {
    const raw = this.values.get(key);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw this.error(key, 'must be an object', raw);
    return ConfigReader.fromJson(raw as Record<string, unknown>, `${this.source} ${key}`);
  }

  /** The same configuration without `keys` (a family that reads them its own way). */
  without(...keys: string[]): ConfigReader {
    const values = new Map(this.values);
    for (const key of keys) values.delete(key);
    return new ConfigReader(values, this.source);
  }

  has(key: string): boolean {
    const value = this.values.get(key);
    return value !== undefined && value !== null;
  }

  raw(key: string): unknown {
    return this.values.get(key);
  }

  /** A positive integer (or >= 0 with `allowZero`). */
  int(key: string, fallback?: number, allowZero = false): number {
    const value = this.number(key, fallback);
    if (!Number.isSafeInteger(value) || value < (allowZero ? 0 : 1)) {
      throw this.error(key, `must be a ${allowZero ? 'non-negative' : 'positive'} integer`, value);
    }
    return value;
  }

  /** A decoder layer count: a positive integer of at most {@link MAX_LAYERS}. */
  layerCount(key: string): number {
    const value = this.int(key);
    // The spec holds one entry per layer: a lying count must fail before an array that long is made.
    if (value > MAX_LAYERS) throw this.error(key, `must be at most ${MAX_LAYERS}`, value);
    return value;
  }

  number(key: string, fallback?: number): number {
    let value = this.values.get(key);
    if (value === undefined || value === null) {
      if (fallback !== undefined) return fallback;
      throw this.error(key, 'is missing', undefined);
    }
    if (typeof value === 'bigint') value = Number(value);
    if (typeof value !== 'number' || !Number.isFinite(value)) throw this.error(key, 'must be a finite number', value);
    return value;
  }

  bool(key: string, fallback: boolean): boolean {
    const value = this.values.get(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') throw this.error(key, 'must be a boolean', value);
    return value;
  }

  string(key: string, fallback?: string): string {
    const value = this.values.get(key);
    if (value === undefined || value === null) {
      if (fallback !== undefined) return fallback;
      throw this.error(key, 'is missing', undefined);
    }
    if (typeof value !== 'string') throw this.error(key, 'must be a string', value);
    return value;
  }

  intList(key: string): number[] {
    const value = this.values.get(key);
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value) || !value.every((v) => Number.isSafeInteger(v))) {
      throw this.error(key, 'must be a list of integers', value);
    }
    return value as number[];
  }

  /** Fails when a key the architecture cannot honour is set (e.g. rope scaling), instead of running it wrongly. */
  refuse(key: string, why: string): void {
    if (this.has(key)) {
      throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${this.source}: '${key}' is set, but ${why}`);
    }
  }

  private error(key: string, what: string, value: unknown): DynamoeError {
    const shown = value === undefined ? '' : `, got ${JSON.stringify(value)?.slice(0, 80)}`;
    return new DynamoeError('ERR_DYNAMOE_FORMAT', `${this.source}: '${key}' ${what}${shown}`);
  }
}
