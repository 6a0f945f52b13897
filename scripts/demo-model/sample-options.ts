/** Options of `make-samples.ts`, with their defaults. */
export interface SampleOptions {
  /** Output folder. Default `samples`. */
  outDir: string;
  /** Seed of the sample scenes (training uses 1 and 2, validation 1001, evaluation 2024, the unit test 31337). Default 777. */
  seed: number;
  /** Synthetic images in all; classes cycle. Default 25 (5 per class). */
  count: number;
  /** Where Debian's python3-skimage keeps its data. */
  skimageData: string;
  /** skimage files to convert, with the name they get under samples/photos/. */
  photos: readonly { file: string; name: string }[];
  /**
   * Integer nearest-neighbour upscaling of the synthetic scenes, so they are not thumbnails in the
   * dashboard. With a factor k, PIL-NEAREST resizing back to the model input samples source pixel
   * k·x + ⌊k/2⌋, i.e. exactly the original scene. Default 3.
   */
  upscale: number;
  /** JPEG quality of the photographs. Default 85. */
  jpegQuality: number;
}

export const DEFAULT_SAMPLE_OPTIONS: Readonly<SampleOptions> = Object.freeze({
  outDir: 'samples',
  seed: 777,
  count: 25,
  skimageData: '/usr/lib/python3/dist-packages/skimage/data',
  photos: [
    { file: 'astronaut.png', name: 'astronaut.jpg' },
    { file: 'chelsea.png', name: 'chelsea-cat.jpg' },
    { file: 'coffee.png', name: 'coffee.jpg' },
    { file: 'rocket.jpg', name: 'rocket.jpg' },
  ],
  upscale: 3,
  jpegQuality: 85,
});
