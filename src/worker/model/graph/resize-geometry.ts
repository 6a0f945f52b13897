/**
 * The geometry of an IR `Resize` node, computed as ONNX Runtime computes it, so that the shape
 * rule, the ONNX compiler and the TF.js engine agree with ONNX Runtime running the source file.
 *
 * A Resize gives its target either as `sizes` (IR attribute: the output height and width) or as
 * `scales` (IR attribute: four factors, batch and channels 1):
 * - sizes: the output is the size itself, and the coordinate transform divides by the float32
 *   scale size / input. Turning sizes into scales instead loses the size: floor(7 · f32(61 / 7))
 *   is 60.
 * - scales: the output is floor(input · scale), the product taken in float32 as ONNX Runtime
 *   does (floor(3 · f32(5 / 3)) is 5 in float32 and 4 in double), and the coordinate transform
 *   divides by the scale as given.
 */
import { ModelError } from '../../../shared/errors.js';
import type { GraphNode } from './ir.js';
import { attrInts } from './ir.js';

export interface ResizeGeometry {
  /** Output `[height, width]`. */
  size: [number, number];
  /** The float32 `[height, width]` scales the coordinate transform divides by. */
  scale: [number, number];
  /** True when the node gives `sizes` (the scale is then size / input whatever its value). */
  bySize: boolean;
}

/** Output size and coordinate scales of a Resize node on an NCHW input `[n, c, h, w]`. */
export function resizeGeometry(node: GraphNode, [, , h, w]: number[]): ResizeGeometry {
  const sizes = attrInts(node, 'sizes');
  if (sizes) {
    if (sizes.length !== 2 || !sizes.every((d) => Number.isInteger(d) && d >= 1)) throw new ModelError(`node ${node.name} (Resize): sizes must be a positive output height and width, got [${sizes.join(', ')}]`);
    const [oh, ow] = sizes;
    return { size: [oh, ow], scale: [Math.fround(oh / h), Math.fround(ow / w)], bySize: true };
  }
  const scales = (node.attrs.scales as { floats: number[] } | undefined)?.floats;
  if (!scales || scales.length !== 4 || scales[0] !== 1 || scales[1] !== 1) throw new ModelError(`node ${node.name} (Resize): only constant spatial scales or sizes are supported`);
  const [sh, sw] = [Math.fround(scales[2]), Math.fround(scales[3])];
  return { size: [Math.floor(Math.fround(h * sh)), Math.floor(Math.fround(w * sw))], scale: [sh, sw], bySize: false };
}

/**
 * Source rows and columns of every output position for nearest/asymmetric/floor, as ONNX Runtime
 * maps them: floor(f32(i / scale)), clamped to the input; and the input itself when the output has
 * its shape, whatever the scales (ONNX Runtime then copies: 29 · f32(30 / 29) floors to 29, and
 * the formula would read row 0 twice). TF.js' own nearest resize multiplies by input / output in
 * double instead and differs at some positions (27 → 117: output 65 reads 15, not 14).
 */
export function nearestFloorSources(node: GraphNode, input: number[]): [Int32Array, Int32Array] {
  const { size, scale } = resizeGeometry(node, input);
  const copies = size[0] === input[2] && size[1] === input[3];
  const axis = (a: 0 | 1): Int32Array => Int32Array.from({ length: size[a] }, (_, i) => (copies ? i : Math.min(Math.max(Math.floor(Math.fround(i / scale[a])), 0), input[a + 2] - 1)));
  return [axis(0), axis(1)];
}
