/**
 * The subset of `onnx.proto` (ONNX IR) that the importer reads and the graph compiler writes,
 * declared as protobufjs reflection JSON. Field numbers follow the published schema exactly;
 * anything neither side uses (sparse tensors, training info, functions) is left out, which protobuf
 * allows: unknown fields are skipped when reading and absent fields are not serialised.
 */
import protobuf from 'protobufjs';

/** `TensorProto.DataType` values used by the compiler and read by the importer. */
export const TensorDataType = {
  FLOAT: 1,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
} as const;
export type TensorDataTypeValue = (typeof TensorDataType)[keyof typeof TensorDataType];

/** `AttributeProto.AttributeType` values used by the compiler. */
export const AttributeType = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
} as const;

const SCHEMA = {
  nested: {
    onnx: {
      nested: {
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            refAttrName: { type: 'string', id: 21 },
            docString: { type: 'string', id: 13 },
            type: { type: 'int32', id: 20 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            s: { type: 'bytes', id: 4 },
            t: { type: 'TensorProto', id: 5 },
            g: { type: 'GraphProto', id: 6 },
            floats: { rule: 'repeated', type: 'float', id: 7 },
            ints: { rule: 'repeated', type: 'int64', id: 8 },
            strings: { rule: 'repeated', type: 'bytes', id: 9 },
          },
        },
        ValueInfoProto: {
          fields: {
            name: { type: 'string', id: 1 },
            type: { type: 'TypeProto', id: 2 },
            docString: { type: 'string', id: 3 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            domain: { type: 'string', id: 7 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
            docString: { type: 'string', id: 6 },
          },
        },
        StringStringEntryProto: {
          fields: {
            key: { type: 'string', id: 1 },
            value: { type: 'string', id: 2 },
          },
        },
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
            producerName: { type: 'string', id: 2 },
            producerVersion: { type: 'string', id: 3 },
            domain: { type: 'string', id: 4 },
            modelVersion: { type: 'int64', id: 5 },
            docString: { type: 'string', id: 6 },
            graph: { type: 'GraphProto', id: 7 },
            metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 14 },
          },
        },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            docString: { type: 'string', id: 10 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
            valueInfo: { rule: 'repeated', type: 'ValueInfoProto', id: 13 },
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            dataType: { type: 'int32', id: 2 },
            floatData: { rule: 'repeated', type: 'float', id: 4, options: { packed: true } },
            int32Data: { rule: 'repeated', type: 'int32', id: 5, options: { packed: true } },
            int64Data: { rule: 'repeated', type: 'int64', id: 7, options: { packed: true } },
            name: { type: 'string', id: 8 },
            docString: { type: 'string', id: 12 },
            rawData: { type: 'bytes', id: 9 },
            doubleData: { rule: 'repeated', type: 'double', id: 10, options: { packed: true } },
            externalData: { rule: 'repeated', type: 'StringStringEntryProto', id: 13 },
            dataLocation: { type: 'int32', id: 14 },
          },
        },
        TensorShapeProto: {
          fields: {
            dim: { rule: 'repeated', type: 'Dimension', id: 1 },
          },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dimValue', 'dimParam'] } },
              fields: {
                dimValue: { type: 'int64', id: 1 },
                dimParam: { type: 'string', id: 2 },
                denotation: { type: 'string', id: 3 },
              },
            },
          },
        },
        TypeProto: {
          oneofs: { value: { oneof: ['tensorType'] } },
          fields: {
            tensorType: { type: 'Tensor', id: 1 },
            denotation: { type: 'string', id: 6 },
          },
          nested: {
            Tensor: {
              fields: {
                elemType: { type: 'int32', id: 1 },
                shape: { type: 'TensorShapeProto', id: 2 },
              },
            },
          },
        },
        OperatorSetIdProto: {
          fields: {
            domain: { type: 'string', id: 1 },
            version: { type: 'int64', id: 2 },
          },
        },
      },
    },
  },
};

// Plain-object shapes of the messages above, as passed to `encodeModel`.
export interface AttributeMessage {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  g?: GraphMessage;
  floats?: number[];
  ints?: number[];
}

export interface TensorMessage {
  name: string;
  dims: number[];
  dataType: TensorDataTypeValue;
  /** Little-endian bytes of the values (x86/ARM hosts are little-endian, as ONNX requires). */
  rawData: Uint8Array;
}

export interface NodeMessage {
  name: string;
  opType: string;
  input: string[];
  output: string[];
  attribute: AttributeMessage[];
  domain?: string;
}

/** A dimension is fixed (`number`) or symbolic (`string`, e.g. `batch`). */
export type DimMessage = { dimValue: number } | { dimParam: string };

export interface ValueInfoMessage {
  name: string;
  type: { tensorType: { elemType: number; shape: { dim: DimMessage[] } } };
}

export interface GraphMessage {
  name: string;
  node: NodeMessage[];
  initializer: TensorMessage[];
  input: ValueInfoMessage[];
  output: ValueInfoMessage[];
  docString?: string;
}

export interface ModelMessage {
  irVersion: number;
  opsetImport: Array<{ domain: string; version: number }>;
  producerName: string;
  producerVersion: string;
  graph: GraphMessage;
  docString?: string;
  metadataProps?: Array<{ key: string; value: string }>;
}

let modelType: protobuf.Type | undefined;

function getModelType(): protobuf.Type {
  modelType ??= protobuf.Root.fromJSON(SCHEMA).lookupType('onnx.ModelProto');
  return modelType;
}

/** Serialise a model to ONNX protobuf bytes (what `InferenceSession.create` and `onnx.load` read). */
export function encodeModel(model: ModelMessage): Uint8Array {
  const type = getModelType();
  // `fromObject` would copy every raw_data buffer; `create` keeps references, which matters for
  // VGG16's 553 MB of weights.
  return type.encode(type.create(model as unknown as Record<string, unknown>)).finish();
}

/** A decoded tensor: fields as the importer sees them (absent repeated fields are empty). */
export interface DecodedTensor {
  name: string;
  dims: number[];
  dataType: number;
  rawData?: Uint8Array;
  floatData?: number[];
  doubleData?: number[];
  int32Data?: number[];
  int64Data?: number[];
  externalData?: Array<{ key: string; value: string }>;
  dataLocation?: number;
}

export interface DecodedAttribute {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: DecodedTensor;
  floats?: number[];
  ints?: number[];
}

export interface DecodedNode {
  name?: string;
  opType: string;
  domain?: string;
  input?: string[];
  output?: string[];
  attribute?: DecodedAttribute[];
}

export interface DecodedValueInfo {
  name: string;
  type?: { tensorType?: { elemType?: number; shape?: { dim?: Array<{ dimValue?: number; dimParam?: string }> } } };
}

export interface DecodedModel {
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  opsetImport?: Array<{ domain?: string; version?: number }>;
  graph?: {
    name?: string;
    node?: DecodedNode[];
    initializer?: DecodedTensor[];
    input?: DecodedValueInfo[];
    output?: DecodedValueInfo[];
  };
}

/**
 * Read a model for import. Byte fields stay views into `bytes` (no copy of the weights); int64s
 * become numbers (shapes and axes fit easily).
 */
export function readModel(bytes: Uint8Array): DecodedModel {
  const type = getModelType();
  return type.toObject(type.decode(bytes), { longs: Number, bytes: Uint8Array, defaults: false }) as DecodedModel;
}

/** Parse bytes back into plain objects (tests and debugging). */
export function decodeModel(bytes: Uint8Array): Record<string, unknown> {
  const type = getModelType();
  return type.toObject(type.decode(bytes), { longs: Number, bytes: Array, defaults: false }) as Record<string, unknown>;
}
