"""A small seeded PyTorch classifier that resizes by size (`F.interpolate(x, size=...)`), which
exports ONNX Resize with `sizes` rather than `scales`:

    7x7 -> 61x61     bilinear (linear/half_pixel): 7 · (61 / 7) is 60.99... in double
    27x27 -> 117x117 nearest (asymmetric/floor): 27 · (117 / 27) is 116.99... in double, and
                     output row 65 reads source row 14 in ONNX Runtime (float32 arithmetic)
                     but row 15 in TF.js' own nearest resize

so an import that turns sizes into scales d / x loses a row and a column. Exported with a dynamic
batch: the sizes are computed at run time (Shape -> Slice -> Concat) and the import folds them.
Tests compare the engines with ONNX Runtime on the file itself, so no reference is written.

    /usr/bin/python3 scripts/onnx-fixtures/make_resize_fixture.py test/fixtures/onnx
"""
import os
import sys

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F


class ResizeBySize(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 9, stride=2)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 14x14 -> 7x7
        x = F.interpolate(x, size=(61, 61), mode='bilinear', align_corners=False)
        x = F.relu(self.conv2(x))  # 61x61 -> 27x27
        x = F.interpolate(x, size=(117, 117), mode='nearest')
        x = F.relu(self.conv3(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


out = sys.argv[1]
torch.manual_seed(7)
model = ResizeBySize().eval()
path = os.path.join(out, 'resize-sizes.onnx')
torch.onnx.export(model, torch.randn(2, 3, 14, 14), path, opset_version=17, input_names=['input'], output_names=['logits'], dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
resizes = [n for n in onnx.load(path).graph.node if n.op_type == 'Resize']
assert len(resizes) == 2 and all(len(n.input) == 4 and n.input[3] for n in resizes), resizes
print(path, [(n.input, [(a.name, a.s.decode()) for a in n.attribute if a.type == onnx.AttributeProto.STRING]) for n in resizes])
