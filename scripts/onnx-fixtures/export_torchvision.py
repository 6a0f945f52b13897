"""Export a torchvision classifier with seeded random weights to ONNX, for benchmarks and the
opt-in full-size parity check (pretrained weights cannot be downloaded here; timing does not
depend on the values). Run with Debian's torch:

    /usr/bin/python3 scripts/onnx-fixtures/export_torchvision.py resnet50 /tmp/resnet50.onnx [--reference]

Exactly the three lines a user runs on a fine-tuned model: build it, eval(), torch.onnx.export
with a dynamic batch axis. With --reference (ResNets only) it also writes <out>.reference.json:
two seeded images and, per image, the probabilities and every CAM method (prob score, top-1) at
layer4's output from PyTorch autograd, for test/unit/onnx/resnet50-parity.test.ts.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import cams  # noqa: E402  (the same formulas as the small fixtures)

name, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = getattr(torchvision.models, name)(num_classes=1000).eval()
torch.onnx.export(model, torch.randn(1, 3, 224, 224), out, opset_version=17, input_names=['input'], output_names=['logits'], dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})

if '--reference' in sys.argv:
    features = torch.nn.Sequential(*list(model.children())[:-2])
    images = np.random.default_rng(11).normal(0, 1, size=(2, 224, 224, 3)).astype(np.float32)
    results = []
    for img in images:
        a = features(torch.from_numpy(img.transpose(2, 0, 1)[None].copy())).detach().requires_grad_(True)
        probs = F.softmax(model.fc(torch.flatten(model.avgpool(a), 1)), 1)
        top = int(probs[0].argmax())
        (g,) = torch.autograd.grad(probs[0, top], a)
        results.append({'probabilities': probs[0].tolist(), 'top1': top, 'cams': {m: v.flatten().tolist() for m, v in cams(a[0].detach(), g[0]).items()}})
    with open(out + '.reference.json', 'w') as f:
        json.dump({'images': images.reshape(2, -1).tolist(), 'results': results}, f)
print(out)
