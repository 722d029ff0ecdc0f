// Typed, range-checked reads of a JSON request body's fields; each failure is a 400 naming the field (OpenAI's param).
import { describe } from '../validate';
import { ServeError } from './serve-error';

/** A wrong type: 400 with ERR_DYNAMOE_TYPE. */
export function typeFailure(param: string, expected: string, value: unknown): ServeError {
  return new ServeError(400, 'ERR_DYNAMOE_TYPE', `${param} must be ${expected}, got ${describe(value)}`, param);
}

/** A value out of range: 400 with ERR_DYNAMOE_VALUE. */
export function valueFailure(param: string, expected: string, value: unknown): ServeError {
  return new ServeError(400, 'ERR_DYNAMOE_VALUE', `${param} must be ${expected}, got ${describe(value)}`, param);
}

/** A feature the server does not offer: 400 with ERR_DYNAMOE_UNSUPPORTED. */
export function unsupported(param: string, message: string): ServeError {
  return new ServeError(400, 'ERR_DYNAMOE_UNSUPPORTED', message, param);
}

/** The fields of one JSON object body. JSON null means "not given", as in OpenAI's API; unknown fields are ignored. */
export class RequestFields {
  private readonly body: Record<string, unknown>;

  constructor(body: unknown) {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ServeError(400, 'ERR_DYNAMOE_TYPE', `the request body must be a JSON object, got ${describe(body)}`);
    }
    this.body = body as Record<string, unknown>;
  }

  /** The raw value (undefined when absent or null). */
  value(name: string): unknown {
    const value = Object.hasOwn(this.body, name) ? this.body[name] : undefined;
    return value === null ? undefined : value;
  }

  boolean(name: string): boolean | undefined {
    const value = this.value(name);
    if (value !== undefined && typeof value !== 'boolean') throw typeFailure(name, 'a boolean', value);
    return value;
  }

  string(name: string): string | undefined {
    const value = this.value(name);
    if (value !== undefined && typeof value !== 'string') throw typeFailure(name, 'a string', value);
    return value;
  }

  /** A finite number in [min, max] (`minExclusive`: in (min, max]). */
  number(name: string, min: number, max: number, minExclusive = false): number | undefined {
    const value = this.value(name);
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value)) throw typeFailure(name, 'a number', value);
    if ((minExclusive ? value <= min : value < min) || value > max) {
      throw valueFailure(name, `a number in ${minExclusive ? '(' : '['}${min}, ${max}]`, value);
    }
    return value;
  }

  /** An integer >= min (and <= max when given). */
  integer(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const value = this.value(name);
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value)) throw typeFailure(name, 'an integer', value);
    if (!Number.isInteger(value) || value < min || value > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
      throw valueFailure(name, range, value);
    }
    return value;
  }

  /** An object (not an array). */
  object(name: string): Record<string, unknown> | undefined {
    const value = this.value(name);
    if (value !== undefined && (typeof value !== 'object' || Array.isArray(value))) {
      throw typeFailure(name, 'an object', value);
    }
    return value as Record<string, unknown> | undefined;
  }
}
