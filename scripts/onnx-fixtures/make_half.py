"""Float16 copy of the ResNet fixture, as `model.half()` exports or onnxconverter-common's
float16 conversion would write it: every float initializer and the graph's input and output in
float16. Tests that such files load (weights decoded to float32) and still match the float32
PyTorch reference within the float16 tolerances.

    /usr/bin/python3 scripts/onnx-fixtures/make_half.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', '..', 'test', 'fixtures', 'onnx')

model = onnx.load(os.path.join(FIXTURES, 'resnet.onnx'))
for i, tensor in enumerate(model.graph.initializer):
    if tensor.data_type == TensorProto.FLOAT:
        half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name)
        model.graph.initializer[i].CopyFrom(half)
for value in list(model.graph.input) + list(model.graph.output):
    if value.type.tensor_type.elem_type == TensorProto.FLOAT:
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
onnx.checker.check_model(model)
onnx.save(model, os.path.join(FIXTURES, 'resnet-fp16.onnx'))
print('wrote resnet-fp16.onnx')
