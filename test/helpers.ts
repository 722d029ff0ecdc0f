// Small assertion helpers shared by the test files.

/**
 * The typed-array kind of a value, compared by tag rather than instanceof: the addon creates its arrays in Node's
 * main realm, while jest runs each test file in its own vm context with its own Int32Array constructor.
 */
export function typedArrayTag(value: unknown): string {
  return Object.prototype.toString.call(value).slice(8, -1);
}
