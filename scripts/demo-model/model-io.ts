/**
 * TF.js Layers save/load on the local file system without @tensorflow/tfjs-node (whose native
 * download cannot run offline): `model.json` plus one weight shard, the same files `tfjs-node`'s
 * `file://` handler and the Python converter write.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';

export const WEIGHTS_FILE = 'group1-shard1of1.bin';

function toArrayBuffer(data: tf.io.WeightData): ArrayBuffer {
  return tf.io.concatenateArrayBuffers(Array.isArray(data) ? data : [data]);
}

/** A save handler that writes `<dir>/model.json` and `<dir>/group1-shard1of1.bin`. */
export function fileSaveHandler(dir: string): tf.io.IOHandler {
  return tf.io.withSaveHandler(async (artifacts) => {
    if (artifacts.weightData === undefined || artifacts.weightSpecs === undefined) {
      throw new Error('model has no weights to save');
    }
    const weights = toArrayBuffer(artifacts.weightData);
    const modelJson = {
      format: 'layers-model',
      generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
      convertedBy: null,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs }],
    };
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'model.json'), `${JSON.stringify(modelJson)}\n`);
    await writeFile(path.join(dir, WEIGHTS_FILE), new Uint8Array(weights));
    return {
      modelArtifactsInfo: {
        dateSaved: new Date(),
        modelTopologyType: 'JSON',
        weightDataBytes: weights.byteLength,
      },
    };
  });
}

interface ModelJsonFile {
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
}

/** Load `<dir>/model.json` and its shards into a `tf.LayersModel`. */
export async function loadLayersModelFromDir(dir: string): Promise<tf.LayersModel> {
  const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as ModelJsonFile;
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: ArrayBuffer[] = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const shard of group.paths) {
      const bytes = await readFile(path.join(dir, shard));
      buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    }
  }
  return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: specs, weightData: tf.io.concatenateArrayBuffers(buffers) }));
}
