/**
 * How a model wants its input pixels: the one definition of the preprocessing modes. The numbers
 * live here (shared) because a run records the mode its model needs and the dashboard shows it;
 * the pixel loop that applies them is `src/worker/image/preprocess.ts`.
 *
 * Each mode is a per-channel affine map of the 8-bit RGB value v, evaluated in float32 step by
 * step exactly as the reference library does it (so the results are bit-identical to it):
 *
 * | mode    | reference                                          | channels | value                          |
 * |---------|----------------------------------------------------|----------|--------------------------------|
 * | `caffe` | Keras `imagenet_utils.preprocess_input` (VGG, ResNet) | BGR   | v - mean_bgr                   |
 * | `tf`    | Keras `mode="tf"` (MobileNet, Inception, Xception)  | RGB      | v / 127.5 - 1                  |
 * | `torch` | torchvision `ToTensor` + `Normalize(mean, std)`     | RGB      | (v / 255 - mean) / std         |
 * | `raw`   | torchvision `ToTensor` alone, Keras `Rescaling(1/255)` | RGB   | v / 255                        |
 * | `none`  | Keras EfficientNet's pass-through `preprocess_input` | RGB     | v                              |
 *
 * Center crop (`--center-crop`) is torchvision's evaluation transform: `Resize(s)` of the shorter
 * side to s = round(256 / 224 * input side), then `CenterCrop(input)`. Without it the whole image
 * is resized to the input size, as `keras.utils.load_img(target_size=...)` does.
 */
export const PREPROCESS_MODES = ['caffe', 'tf', 'torch', 'raw', 'none'] as const;
export type PreprocessMode = (typeof PREPROCESS_MODES)[number];

export interface PreprocessDefinition {
  /** Order of the three channels in the model input. */
  channels: 'rgb' | 'bgr';
  /** One line for help texts and provenance. */
  summary: string;
}

export const PREPROCESS_DEFINITIONS: Readonly<Record<PreprocessMode, PreprocessDefinition>> = Object.freeze({
  caffe: { channels: 'bgr', summary: 'RGB->BGR, minus the ImageNet mean (Keras VGG16/ResNet50 default)' },
  tf: { channels: 'rgb', summary: 'scaled to [-1, 1] (Keras MobileNet/Inception/EfficientNetV2 "tf" mode)' },
  torch: { channels: 'rgb', summary: 'RGB/255, then ImageNet mean/std (torchvision ToTensor + Normalize)' },
  raw: { channels: 'rgb', summary: 'RGB/255 (models that normalise inside the graph)' },
  none: { channels: 'rgb', summary: 'RGB 0-255 as is (Keras EfficientNet, which rescales and normalises inside the model)' },
});

/** Keras `imagenet_utils` caffe-mode mean, BGR order. */
export const IMAGENET_MEAN_BGR: readonly [number, number, number] = Object.freeze([103.939, 116.779, 123.68]) as readonly [number, number, number];
/** torchvision's ImageNet statistics, RGB order, on values scaled to [0, 1]. */
export const IMAGENET_MEAN_RGB: readonly [number, number, number] = Object.freeze([0.485, 0.456, 0.406]) as readonly [number, number, number];
export const IMAGENET_STD_RGB: readonly [number, number, number] = Object.freeze([0.229, 0.224, 0.225]) as readonly [number, number, number];

/** torchvision's evaluation recipe: resize the shorter side to 256 for a 224 crop. */
export const CENTER_CROP_RESIZE_RATIO = 256 / 224;

/** The model's preprocessing as a run records it and a worker applies it. */
export interface ModelPreprocessing {
  mode: PreprocessMode;
  /** torchvision-style resize of the shorter side, then the central crop. Default false. */
  centerCrop: boolean;
}

/** A short human-readable form, e.g. `torch + center crop`. */
export function describePreprocessing(p: ModelPreprocessing): string {
  return p.centerCrop ? `${p.mode} + center crop` : p.mode;
}
