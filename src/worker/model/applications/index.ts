/**
 * The `keras.applications` layouts by name (`--architecture`), for Keras weights-only .h5 files.
 * VGG16 stays the sequential `Architecture` (its Keras-exact path); the others are Keras Functional
 * configs, converted like a full-model file's own `model_config`.
 */
import type { KerasArchitecture } from '../../../shared/model-options.js';
import type { Json, KerasTopology } from '../keras-config.js';
import { vgg16Architecture } from '../vgg16.js';
import { densenet121Config } from './densenet121.js';
import { efficientNetB0Config } from './efficientnetb0.js';
import { mobilenetV2Config } from './mobilenetv2.js';
import { resnet50Config } from './resnet50.js';

export interface ApplicationOptions {
  /** Output classes of `predictions`. Default 1000. */
  classes?: number;
  /** `[h, w, c]`. Default `[224, 224, 3]`, the size the ImageNet weights were trained at. */
  inputShape?: [number, number, number];
}

const BUILDERS: Record<Exclude<KerasArchitecture, 'vgg16'>, (inputShape: [number, number, number], classes: number) => Record<string, unknown>> = {
  resnet50: resnet50Config,
  mobilenetv2: mobilenetV2Config,
  densenet121: densenet121Config,
  efficientnetb0: efficientNetB0Config,
};

export function applicationTopology(name: KerasArchitecture, options: ApplicationOptions = {}): KerasTopology {
  const classes = options.classes ?? 1000;
  const inputShape = options.inputShape ?? [224, 224, 3];
  if (name === 'vgg16') return { kind: 'sequential', architecture: { ...vgg16Architecture({ classes }), inputShape } };
  return { kind: 'graph', model: BUILDERS[name](inputShape, classes), name };
}

/**
 * File layer to read for each layout layer the file does not name. Keras names some layers after
 * how many of their class the session had built before (`normalization_2` for EfficientNet's input
 * normalisation when the model was not the first one built), so a weights-only file can disagree
 * with the layout on those names. Keras' `layer_names` lists every layer in model order, as the
 * layout does; when both lists are as long, a layout layer missing from the file takes the file
 * layer at the same position, provided the layout has no layer of that name (as Keras'
 * `load_weights(by_name=False)` pairs layers by position). Shapes are still checked where the
 * weights are read.
 */
export function positionalLayerAliases(layout: Json, fileLayerNames: readonly string[]): Map<string, string> {
  const layers = ((layout as { config?: { layers?: Array<{ name?: unknown; config?: { name?: unknown } }> } }).config?.layers ?? []).map((l) => String(l.name ?? l.config?.name ?? ''));
  const aliases = new Map<string, string>();
  if (layers.length !== fileLayerNames.length) return aliases;
  const inFile = new Set(fileLayerNames);
  const inLayout = new Set(layers);
  layers.forEach((name, i) => {
    const fileName = fileLayerNames[i];
    if (!inFile.has(name) && !inLayout.has(fileName)) aliases.set(name, fileName);
  });
  return aliases;
}
