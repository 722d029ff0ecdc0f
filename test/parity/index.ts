// The backend-parity harness (in the spirit of llama.cpp's test-backend-ops): a table of op x shape x dtype rows,
// each run on every backend present and held to the float64 reference and, off the CPU, to the CPU backend.
import { Backend } from './backends';
import { edgeRows, layerRows, specialLayerRows } from './layer-cases';
import { exampleRouteRows, manyExpertRouteRows, randomRouteRows } from './route-cases';
import { LayerRow, Op, ParityRow, RouteRow } from './table';

export * from './backends';
export * from './compare';
export * from './layer-cases';
export * from './reference-checks';
export * from './route-cases';
export * from './runner';
export * from './table';

/** The table, by op; each list in a fixed order with fixed seeds, so a row's name always means the same inputs. */
export const PARITY_TABLE: { route: RouteRow[]; moe_layer: LayerRow[] } = {
  route: [...randomRouteRows(), ...exampleRouteRows(), ...manyExpertRouteRows()],
  moe_layer: [...layerRows(), ...edgeRows(), ...specialLayerRows()],
};

/** The rows of `op` listed for `backend`: all of them, but only the smaller ones (row.cpu) as CPU rows. */
export function rowsFor(op: Op, backend: Backend): ParityRow[] {
  const rows: ParityRow[] = PARITY_TABLE[op];
  return backend === 'cpu' ? rows.filter((row) => row.cpu) : rows;
}
