// Picks one option per layer so the summed cost stays within a budget at the least summed loss (a multiple-choice
// knapsack, solved exactly over the Pareto frontier of partial choices).

/** One layer's choices: cost[i] and loss[i] of option i. */
export interface LayerOptions {
  cost: number[];
  loss: number[];
}

interface Partial {
  cost: number;
  loss: number;
  choice: number[];
}

// The frontier is thinned to this many cost buckets if it ever grows past it (many layers, many options).
const MAX_FRONTIER = 20000;

function paretoFrontier(states: Partial[]): Partial[] {
  states.sort((a, b) => a.cost - b.cost || a.loss - b.loss);
  const kept: Partial[] = [];
  for (const s of states) if (kept.length === 0 || s.loss < kept[kept.length - 1].loss) kept.push(s);
  if (kept.length <= MAX_FRONTIER) return kept;
  const step = kept.length / MAX_FRONTIER;
  return Array.from({ length: MAX_FRONTIER }, (_, i) => kept[Math.floor(i * step)]);
}

/** Option index per layer minimising summed loss with summed cost <= budget; null when no choice fits. */
export function solveBudget(layers: LayerOptions[], budget: number): number[] | null {
  let frontier: Partial[] = [{ cost: 0, loss: 0, choice: [] }];
  for (const layer of layers) {
    const next: Partial[] = [];
    for (const s of frontier) {
      layer.cost.forEach((cost, option) => {
        const total = s.cost + cost;
        // Costs are never negative, so a partial choice over budget stays over budget.
        if (total <= budget) next.push({ cost: total, loss: s.loss + layer.loss[option], choice: [...s.choice, option] });
      });
    }
    if (next.length === 0) return null;
    frontier = paretoFrontier(next);
  }
  return frontier.reduce((best, s) => (s.loss < best.loss ? s : best)).choice;
}
