// Float64 test reference: the dense ops every architecture's reference forward is made of.

export type Values = ArrayLike<number>;

/** rows x [outF][inF] weights (starting at `wOffset` in `w`), plus an optional bias. */
export function linear(x: Float64Array, rows: number, inF: number, w: Values, outF: number, bias?: Values, wOffset = 0): Float64Array {
  const out = new Float64Array(rows * outF);
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < outF; o++) {
      let sum = bias ? bias[o] : 0;
      for (let i = 0; i < inF; i++) sum += x[t * inF + i] * w[wOffset + o * inF + i];
      out[t * outF + o] = sum;
    }
  }
  return out;
}

/** RMSNorm of each row of `width` values, over groups of `group` (the whole row by default) sharing weights `w`. */
export function rmsNorm(x: Float64Array, rows: number, width: number, w: Values, eps: number, group = width): Float64Array {
  const out = new Float64Array(x.length);
  for (let t = 0; t < rows; t++) {
    for (let g = 0; g < width; g += group) {
      let squares = 0;
      for (let i = 0; i < group; i++) squares += x[t * width + g + i] ** 2;
      const inv = 1 / Math.sqrt(squares / group + eps);
      for (let i = 0; i < group; i++) out[t * width + g + i] = x[t * width + g + i] * inv * w[i];
    }
  }
  return out;
}
