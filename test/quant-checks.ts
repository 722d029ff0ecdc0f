// Float32 results held to a float64 reference value by value: exact where the reference is an f32 value, else
// correctly rounded or (the looser check) either f32 neighbour of the reference.

export type F32Agreement = 'correctly-rounded' | 'within-1-ulp';

const f32 = new Float32Array(1);
const bits = new Int32Array(f32.buffer);

/** The f32 next to `from` (an f32, possibly ±Infinity) in the direction of `toward`. */
function nextF32Toward(from: number, toward: number): number {
  if (from === 0) return Math.sign(toward) * 2 ** -149;
  f32[0] = from;
  const awayFromZero = Math.abs(toward) > Math.abs(from);
  bits[0] += awayFromZero ? 1 : -1; // sign-magnitude: stepping the magnitude bits moves away from / toward zero
  return f32[0];
}

/** Whether `actual` agrees with `reference` (float64) as `agreement` asks. */
export function agreesAsF32(actual: number, reference: number, agreement: F32Agreement): boolean {
  const rounded = Math.fround(reference);
  if (actual === rounded) return true;
  if (rounded === reference || agreement === 'correctly-rounded') return false;
  return actual === nextF32Toward(rounded, reference);
}

/** Descriptions of the first `limit` elements (as row, col of a matrix `cols` wide) that disagree; empty if none. */
export function f32Disagreements(
  actual: ArrayLike<number>,
  reference: ArrayLike<number>,
  cols: number,
  agreement: F32Agreement,
  limit = 8,
): string[] {
  if (actual.length !== reference.length) return [`length ${actual.length}, expected ${reference.length}`];
  const found: string[] = [];
  let count = 0;
  for (let i = 0; i < reference.length; i++) {
    if (agreesAsF32(actual[i], reference[i], agreement)) continue;
    if (++count <= limit) found.push(`[${Math.floor(i / cols)}, ${i % cols}]: ${actual[i]}, expected ${reference[i]}`);
  }
  if (count > limit) found.push(`... ${count} elements in all`);
  return found;
}
