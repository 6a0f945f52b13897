/**
 * The header of an ONNX file without its graph: `ModelProto.producer_name` (field 2) tells how
 * the model was exported, which decides its default preprocessing (src/shared/model-setup.ts).
 * The producer (`enqueue`) needs it as well as the worker, and neither should decode a graph of
 * hundreds of megabytes for one string, so the top-level fields are walked by wire type.
 */

/**
 * `producer_name` from the first bytes of an ONNX file; null when absent, when `head` ends before
 * it, or when the bytes are not a ModelProto. Writers put the small header fields (1-6) before the
 * graph (7), so a few KiB suffice in practice.
 */
export function readOnnxProducerName(head: Uint8Array): string | null {
  let pos = 0;
  const varint = (): number | null => {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (pos >= head.length) return null;
      const byte = head[pos++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    return null;
  };
  while (pos < head.length) {
    const tag = varint();
    if (tag === null || tag === 0) return null;
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      if (varint() === null) return null;
    } else if (wire === 2) {
      const length = varint();
      if (length === null) return null;
      if (field === 2) return pos + length <= head.length ? new TextDecoder().decode(head.subarray(pos, pos + length)) : null;
      pos += length;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else return null; // groups are not used by onnx.proto: not a ModelProto
  }
  return null;
}
