/**
 * The overlay colormaps by name: 256-entry RGB tables generated from matplotlib (see
 * scripts/reference/pil_render.py). Workers colour heatmaps with them; the dashboard draws the
 * detail view's legend and CAM grid with the same tables, so the legend is the overlay's.
 */
import { GRAY_RGB, INFERNO_RGB, JET_RGB, VIRIDIS_RGB } from './colormap-tables.js';
import type { Colormap } from './explain-options.js';

/** Packed RGB tables, 256 entries. */
export const COLORMAP_TABLES: Readonly<Record<Colormap, Uint8Array>> = Object.freeze({
  viridis: VIRIDIS_RGB,
  inferno: INFERNO_RGB,
  jet: JET_RGB,
  gray: GRAY_RGB,
});

export function colormapTable(name: Colormap): Uint8Array {
  const table = (COLORMAP_TABLES as Record<string, Uint8Array | undefined>)[name];
  if (!table) throw new RangeError(`unknown colormap ${String(name)}; expected one of ${Object.keys(COLORMAP_TABLES).join(', ')}`);
  return table;
}
