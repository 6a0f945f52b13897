/**
 * The model's own properties, beyond its weights: how its inputs are preprocessed, which classes
 * its outputs name, which layer Grad-CAM explains. They belong to the model, not to a run, so they
 * come from the model card beside the weights (src/shared/model-card.ts) and may be overridden by
 * the same flags on `explain`, `worker` and `enqueue`; a run records them as part of the model it
 * needs (src/shared/model-setup.ts).
 */
import type { Command } from 'commander';
import { parseEnum } from './config.js';
import { ConfigError } from './errors.js';
import { PREPROCESS_DEFINITIONS, PREPROCESS_MODES, type PreprocessMode } from './preprocessing.js';

/**
 * `keras.applications` layouts gradcam-audit builds in code, for Keras weights-only .h5 files
 * (`save_weights`, the files `keras.applications` downloads), which carry no topology.
 */
export const KERAS_ARCHITECTURES = ['vgg16', 'resnet50', 'mobilenetv2', 'densenet121', 'efficientnetb0'] as const;
export type KerasArchitecture = (typeof KERAS_ARCHITECTURES)[number];

/**
 * What each layout's `keras.applications.<module>.preprocess_input` does to pixels: the default
 * `--preprocess` of a Keras .h5 read as that layout (VGG16 and ResNet50 "caffe", MobileNetV2 "tf",
 * DenseNet "torch"; EfficientNet passes 0-255 RGB through and rescales inside the model).
 */
export const KERAS_ARCHITECTURE_PREPROCESS: Readonly<Record<KerasArchitecture, PreprocessMode>> = Object.freeze({
  vgg16: 'caffe',
  resnet50: 'caffe',
  mobilenetv2: 'tf',
  densenet121: 'torch',
  efficientnetb0: 'none',
});

export interface ModelOptions {
  /** `--preprocess`; undefined: the model card's, else the default for the model's format. */
  preprocess?: PreprocessMode;
  /** `--center-crop` / `--no-center-crop`; undefined: the model card's, else false. */
  centerCrop?: boolean;
  /** `--labels`: a labels file (path, s3:// URI or http(s) URL); undefined: the card's, `labels.json` beside a TF.js model, else ImageNet for 1000 classes. */
  labels?: string;
  /** `--layer`: the Grad-CAM target; undefined: the card's, else the model's default target. */
  layer?: string;
  /** `--architecture`: the layout of a Keras weights-only .h5; undefined: the card's, else vgg16. Ignored for files that carry their topology. */
  architecture?: KerasArchitecture;
}

/** The model flags as commander hands them over. */
export interface RawModelOptionFlags {
  preprocess?: string;
  centerCrop?: boolean;
  labels?: string;
  layer?: string;
  architecture?: string;
}

/** Help texts of the model flags, declared once for every command that takes them. */
export const MODEL_FLAG_HELP = Object.freeze({
  preprocess: ['--preprocess <mode>', `input preprocessing: ${PREPROCESS_MODES.map((m) => `${m} (${PREPROCESS_DEFINITIONS[m].summary})`).join('; ')}. Default: the model card's, else for a Keras .h5 what keras.applications' preprocess_input does for its --architecture (caffe for vgg16/resnet50, tf for mobilenetv2, torch for densenet121, none for efficientnetb0), caffe for TF.js and torch for ONNX files exported by PyTorch`],
  centerCrop: ['--center-crop', 'torchvision eval geometry: resize the shorter side to 256/224 of the input size, then crop the centre (default: the model card\'s, else off)'],
  noCenterCrop: ['--no-center-crop', 'resize the whole image to the input size even when the model card asks for a center crop'],
  labels: ['--labels <src>', 'class labels: JSON array, Keras class index or one label per line; path, s3:// or http(s) (default: the model card\'s, labels.json beside a TF.js model, else ImageNet for 1000 classes)'],
  layer: ['--layer <name>', 'Grad-CAM target layer (default: the model card\'s, else block5_conv3 for VGG16, else the last conv layer)'],
  architecture: ['--architecture <name>', `layout of a Keras weights-only .h5 (which carries no topology): ${KERAS_ARCHITECTURES.join('|')} (default: the model card's, else vgg16; full-model .h5, TF.js and ONNX files describe themselves)`],
} satisfies Record<string, readonly [string, string]>);

/** Declare the model flags on a command, in one order everywhere (`explain`, `worker`, `enqueue`). */
export function addModelFlags(command: Command, flags: ReadonlyArray<keyof typeof MODEL_FLAG_HELP> = Object.keys(MODEL_FLAG_HELP) as Array<keyof typeof MODEL_FLAG_HELP>): Command {
  for (const flag of flags) command.option(MODEL_FLAG_HELP[flag][0], MODEL_FLAG_HELP[flag][1]);
  return command;
}

/** Longest `--layer` value: tf2onnx names fused ops by joining every source op's name with `;`. */
export const MAX_LAYER_NAME_LENGTH = 2048;

/**
 * Keras layer names (`block5_conv3`), ONNX node names (`/layer4/layer4.2/relu_2/Relu`) and tensor
 * names (`/layer4/Relu_2_output_0`, `onnx::Conv_245`, tf2onnx's `model/conv/BiasAdd;model/conv/Conv2D:0`).
 * Exporters put almost any printable character in them, so only what no exporter writes is refused
 * (whitespace and control characters, usually a quoting slip); the engine checks that the name
 * exists in its model and lists the candidates when it does not.
 */
export function parseLayerName(value: string, what = '--layer'): string {
  if (value.length === 0 || value.length > MAX_LAYER_NAME_LENGTH || /[\s\p{Cc}]/u.test(value)) {
    throw new ConfigError(what, `expected a layer, node or tensor name without spaces (such as block5_conv3 or /layer4/Relu_2_output_0), got ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value)}`);
  }
  return value;
}

export function parseKerasArchitecture(value: string, what = '--architecture'): KerasArchitecture {
  return parseEnum(what, value, KERAS_ARCHITECTURES);
}

export function parsePreprocessMode(value: string, what = '--preprocess'): PreprocessMode {
  return parseEnum(what, value, PREPROCESS_MODES);
}

/** Validate the model flags once, for every command; each error names its flag. */
export function parseModelOptionFlags(flags: RawModelOptionFlags): ModelOptions {
  const options: ModelOptions = {};
  if (flags.preprocess !== undefined) options.preprocess = parsePreprocessMode(flags.preprocess);
  if (flags.centerCrop !== undefined) options.centerCrop = flags.centerCrop;
  if (flags.labels !== undefined) {
    if (flags.labels.trim() === '') throw new ConfigError('--labels', 'expected a labels file (path, s3:// URI or http(s) URL)');
    options.labels = flags.labels;
  }
  if (flags.layer !== undefined) options.layer = parseLayerName(flags.layer);
  if (flags.architecture !== undefined) options.architecture = parseKerasArchitecture(flags.architecture);
  return options;
}
