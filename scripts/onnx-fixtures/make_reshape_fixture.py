"""A small seeded PyTorch classifier whose head flattens with `x.view(x.size(0), -1)`, exported
with a dynamic batch, so the file computes its Reshape target at run time (Shape -> Gather ->
Unsqueeze -> Concat -> Reshape): the import folds that chain (src/worker/model/graph/shape-folding.ts).
Tests compare the engines with ONNX Runtime on the file itself, so no reference is written.

    /usr/bin/python3 scripts/onnx-fixtures/make_reshape_fixture.py test/fixtures/onnx
"""
import os
import sys

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F


class ViewHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(x.view(x.size(0), -1))


out = sys.argv[1]
torch.manual_seed(5)
model = ViewHead().eval()
path = os.path.join(out, 'view-head.onnx')
torch.onnx.export(model, torch.randn(2, 3, 16, 16), path, opset_version=17, input_names=['input'], output_names=['logits'], dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
ops = [n.op_type for n in onnx.load(path).graph.node]
assert 'Shape' in ops and 'Reshape' in ops, ops
print(path, ops)
