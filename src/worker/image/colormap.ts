/**
 * Colormaps for overlays: the tables by name (shared/colormaps.ts), and matplotlib's own
 * value→entry quantisation, so that a value v gets exactly the colour
 * `matplotlib.colormaps[name](v, bytes=True)` gives.
 */
import { colormapTable } from '../../shared/colormaps.js';
import type { Colormap } from '../../shared/explain-options.js';

export { COLORMAP_TABLES, colormapTable } from '../../shared/colormaps.js';

/**
 * matplotlib's quantisation for a 256-entry map: floor(v * 256), with 1.0 in the last bin and
 * out-of-range values clamped (matplotlib's default under/over colours are the end entries).
 * NaN maps to 0: a CAM never has NaN pixels on purpose, and a blank colour is the safe reading.
 */
export function colormapIndex(value: number): number {
  if (!(value > 0)) return 0;
  if (value >= 1) return 255;
  return Math.min(255, Math.floor(value * 256));
}

/** Colour every value of a map: packed RGB, 3 bytes per value. */
export function applyColormap(values: Float32Array, name: Colormap): Uint8Array {
  const table = colormapTable(name);
  const out = new Uint8Array(values.length * 3);
  for (let i = 0, o = 0; i < values.length; i++, o += 3) {
    const t = colormapIndex(values[i]) * 3;
    out[o] = table[t];
    out[o + 1] = table[t + 1];
    out[o + 2] = table[t + 2];
  }
  return out;
}
