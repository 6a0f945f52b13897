/**
 * CMYK → RGB exactly as PIL's `convert('RGB')` does it: no colour management, each channel is
 * (255 - ink) scaled by (255 - black), with PIL's rounded integer division by 255. This is what a
 * Keras pipeline feeds the model for a CMYK JPEG, so it is what we reproduce by default.
 */

/**
 * @param cmyk interleaved CMYK samples, `channels` per pixel (4, or 5 with an alpha that is dropped)
 * @param pixels number of pixels
 * @returns packed RGB, 3 bytes per pixel
 */
export function cmykToRgbPil(cmyk: Uint8Array, pixels: number, channels: number): Uint8Array {
  if (channels < 4) throw new RangeError(`CMYK data needs at least 4 channels, got ${channels}`);
  if (cmyk.length < pixels * channels) throw new RangeError(`CMYK buffer holds ${cmyk.length} bytes, expected ${pixels * channels}`);
  const rgb = new Uint8Array(pixels * 3);
  for (let p = 0, i = 0, o = 0; p < pixels; p++, i += channels, o += 3) {
    const nk = 255 - cmyk[i + 3];
    rgb[o] = nk - mulDiv255(cmyk[i], nk);
    rgb[o + 1] = nk - mulDiv255(cmyk[i + 1], nk);
    rgb[o + 2] = nk - mulDiv255(cmyk[i + 2], nk);
  }
  return rgb;
}

/** round(a * b / 255) for bytes, in PIL's integer form. The result never exceeds b, so no clip. */
function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}
