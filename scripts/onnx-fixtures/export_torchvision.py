"""Export a torchvision classifier with seeded random weights to ONNX, for benchmarks and the
opt-in full-size parity checks (pretrained weights cannot be downloaded here; timing does not
depend on the values). Run with Debian's torch:

    /usr/bin/python3 scripts/onnx-fixtures/export_torchvision.py resnet50 /tmp/resnet50.onnx

Exactly the three lines a user runs on a fine-tuned model: build it, eval(), torch.onnx.export
with a dynamic batch axis.
"""
import sys

import torch
import torchvision

name, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = getattr(torchvision.models, name)(num_classes=1000).eval()
torch.onnx.export(model, torch.randn(1, 3, 224, 224), out, opset_version=17, input_names=['input'], output_names=['logits'], dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
print(out)
