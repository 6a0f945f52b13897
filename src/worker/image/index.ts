/**
 * Image handling for the worker and `explain`: bytes → RGB (`decodeImage`), RGB → model input
 * (`preprocess`, Keras/PIL-exact), and CAM → overlay/heatmap files (`renderOverlay`,
 * `renderHeatmap`).
 */
export type { ColourHandling, DecodableFormat, DecodedImage, DecodeOptions } from './decode.js';
export { DECODABLE_FORMATS, DECODE_ERROR_CODES, DEFAULT_DECODE_OPTIONS, decodeImage, resolveDecodeOptions } from './decode.js';
export type { PreprocessOptions } from './preprocess.js';
export { centerCropResizeSide, channelTables, DEFAULT_PREPROCESS_OPTIONS, fitToModel, IMAGENET_MEAN_BGR, preprocess, resizeForModel, resolvePreprocessOptions } from './preprocess.js';
export type { RgbImage } from './resize.js';
export type { CamGrid, EncodedImage, RenderOptions } from './render.js';
export { DEFAULT_RENDER_OPTIONS, overlayPixels, overlaySize, renderHeatmap, renderOverlay, resolveRenderOptions } from './render.js';
export { applyColormap, colormapIndex, colormapTable } from './colormap.js';
