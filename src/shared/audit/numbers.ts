/** Numbers as the audit's documents print them: 6 decimals are plenty for shares and probabilities. */
export function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
