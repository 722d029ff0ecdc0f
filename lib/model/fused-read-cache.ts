// The fused tensor a store that presents its parts (RowSplitStore, FusedExpertsStore) read last: the loader asks for
// its parts one after the other, so it is read once and dropped after its last part.
import { TensorData } from '../formats/tensor-store';

export class FusedReadCache {
  private readonly parts = new Map<string, number>();
  private cached?: { name: string; data: Promise<TensorData>; left: number };

  constructor(private readonly read: (name: string) => Promise<TensorData>) {}

  /** One more part comes from `fused`. */
  addPart(fused: string): void {
    this.parts.set(fused, (this.parts.get(fused) ?? 0) + 1);
  }

  /** The fused tensor, for one of its parts. */
  async take(fused: string): Promise<TensorData> {
    if (this.cached?.name !== fused) this.cached = { name: fused, data: this.read(fused), left: this.parts.get(fused) ?? 1 };
    const cached = this.cached;
    const data = await cached.data;
    if (--cached.left === 0 && this.cached === cached) this.cached = undefined;
    return data;
  }

  clear(): void {
    this.cached = undefined;
  }
}
