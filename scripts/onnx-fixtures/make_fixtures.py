"""Small seeded PyTorch classifiers exported to ONNX, with Grad-CAM references from autograd.

Run with Debian's torch (tests never need Python; the outputs are committed):

    /usr/bin/python3 scripts/onnx-fixtures/make_fixtures.py test/fixtures/onnx

Each network exercises one op family of real classifiers:
  resnet     residual blocks with BatchNorm, strided 1x1 downsample, MaxPool(3, 2, 1) stem;
             opset 11, fixed batch 1, NHWC input (permuted inside, like a tf2onnx export)
  mobilenet  depthwise + dilated convs, ReLU6 (Clip), Hardswish, SiLU, squeeze-excitation
             (Hardsigmoid, Mul), residual; a Hardswish + Dropout classifier; opset 14,
             weights in an external-data file
  densenet   dense block (Concat), BN-ReLU-conv, AvgPool transition, ReduceMean head; opset 13
  convnext   patchify stem, channels-first LayerNorm written out (ReduceMean/Sub/Pow/Sqrt/Div),
             depthwise 7x7, channels-last LayerNormalization, Linear + GELU (Erf) MLP, layer
             scale, residual; GAP (ReduceMean) -> LayerNorm -> Linear head; opset 17

For every network and image the reference holds the logits, the softmax probabilities and, per
CAM method and score (logit, prob), the ReLU'd map at the default target (the tensor the head
pools) for the top-1 class and for class 3, computed with torch.autograd exactly as design.md
section 4 writes the formulas (eps 1e-7).
"""
import json
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-7
SIZE = 32
CLASSES = 10
IMAGES = 3


def bn(c):
    layer = nn.BatchNorm2d(c)
    # Non-trivial running statistics, so the exported BatchNormalization is not an identity.
    with torch.no_grad():
        layer.running_mean.uniform_(-0.2, 0.2)
        layer.running_var.uniform_(0.5, 1.5)
        layer.weight.uniform_(0.6, 1.4)
        layer.bias.uniform_(-0.2, 0.2)
    return layer


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = bn(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), bn(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layer1 = Basic(16, 16, 1)
        self.layer2 = Basic(16, 24, 2)
        self.fc = nn.Linear(24, CLASSES)

    def features(self, x):
        x = x.permute(0, 3, 1, 2)  # NHWC input, as Keras/tf2onnx models take it
        return self.layer2(self.layer1(self.stem(x)))

    def head(self, a):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(a, 1), 1))


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // 4, 1)
        self.fc2 = nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class MobileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), bn(16), nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), bn(32), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 2, dilation=2, groups=32, bias=False), bn(32), nn.SiLU())
        self.se = SE(32)
        self.project = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), bn(16))
        self.dw2 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1, groups=16, bias=False), bn(32), nn.Hardswish())
        self.last = nn.Sequential(nn.Conv2d(32, 48, 1, bias=False), bn(48), nn.Hardswish())
        self.classifier = nn.Sequential(nn.Linear(48, 32), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(32, CLASSES))

    def features(self, x):
        x = self.stem(x)
        x = x + self.project(self.se(self.dw(self.expand(x))))
        return self.last(self.dw2(x))

    def head(self, a):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(a, 1), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.body = nn.Sequential(bn(cin), nn.ReLU(), nn.Conv2d(cin, 2 * growth, 1, bias=False), bn(2 * growth), nn.ReLU(), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


class DenseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), bn(16), nn.ReLU(), nn.MaxPool2d(2))
        self.block1 = nn.Sequential(DenseLayer(16, 8), DenseLayer(24, 8))
        self.transition = nn.Sequential(bn(32), nn.ReLU(), nn.Conv2d(32, 16, 1, bias=False), nn.AvgPool2d(2))
        self.block2 = nn.Sequential(DenseLayer(16, 8), DenseLayer(24, 8))
        self.final = nn.Sequential(bn(32), nn.ReLU())
        self.fc = nn.Linear(32, CLASSES)

    def features(self, x):
        return self.final(self.block2(self.transition(self.block1(self.stem(x)))))

    def head(self, a):
        return self.fc(a.mean((2, 3)))


class ChannelsFirstLayerNorm(nn.Module):
    """ConvNeXt's LayerNorm over channels of an NCHW tensor, written out as the original does."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c).uniform_(0.5, 1.5))
        self.bias = nn.Parameter(torch.empty(c).uniform_(-0.2, 0.2))

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pw1 = nn.Linear(c, 4 * c)
        self.pw2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.empty(c).uniform_(0.5, 1.0))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 4, 4), ChannelsFirstLayerNorm(24))
        self.block = ConvNeXtBlock(24)
        self.norm = nn.LayerNorm(24, eps=1e-6)
        self.fc = nn.Linear(24, CLASSES)

    def features(self, x):
        return self.block(self.stem(x))

    def head(self, a):
        return self.fc(self.norm(a.mean([-2, -1])))


class Full(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.head(self.net.features(x))


NETWORKS = {
    # name: (constructor, opset, nhwc input, dynamic batch, external data, seed)
    'resnet': (ResNet, 11, True, False, False, 101),
    'mobilenet': (MobileNet, 14, False, True, True, 102),
    'densenet': (DenseNet, 13, False, True, False, 103),
    'convnext': (ConvNeXt, 17, False, True, False, 104),
}


def cams(a, g):
    """The five methods of design.md section 4 on A [K,h,w] and G = dS/dA [K,h,w]; ReLU'd, raw."""
    a_sum = a.sum((1, 2), keepdim=True)
    g2 = g * g
    g3 = g2 * g
    alpha = torch.where(g == 0, torch.zeros_like(g), g2 / (2 * g2 + a_sum * g3 + EPS))
    weighted = lambda w: F.relu((w * a).sum(0))
    return {
        'gradcam': weighted(g.mean((1, 2), keepdim=True)),
        'hirescam': F.relu((g * a).sum(0)),
        'xgradcam': weighted((g * a).sum((1, 2), keepdim=True) / (a_sum + EPS)),
        'layercam': F.relu((F.relu(g) * a).sum(0)),
        'gradcam++': weighted((alpha * F.relu(g)).sum((1, 2), keepdim=True)),
    }


def default_target(model_proto):
    """The tensor the head's global pooling reduces, by the same rule as the TypeScript walker."""
    for node in model_proto.graph.node:
        if node.op_type in ('GlobalAveragePool', 'ReduceMean'):
            if node.op_type == 'ReduceMean':
                axes = next((list(a.ints) for a in node.attribute if a.name == 'axes'), None)
                if axes is None or sorted(x % 4 for x in axes) != [2, 3]:
                    continue
            last = node
    return last.input[0]


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(7)
    images = rng.normal(0, 1, size=(IMAGES, SIZE, SIZE, 3)).astype(np.float32)  # HWC, as the engines take them
    summary = {'images': images.reshape(IMAGES, -1).tolist(), 'height': SIZE, 'width': SIZE, 'models': {}}
    for name, (make, opset, nhwc, dynamic, external, seed) in NETWORKS.items():
        torch.manual_seed(seed)
        net = make().eval()
        full = Full(net).eval()
        x = torch.from_numpy(images if nhwc else images.transpose(0, 3, 1, 2).copy())
        path = os.path.join(out_dir, f'{name}.onnx')
        example = x[:1]
        torch.onnx.export(
            full, example, path, opset_version=opset, input_names=['input'], output_names=['logits'],
            dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}} if dynamic else None,
            do_constant_folding=True,
        )
        proto = onnx.load(path)
        if external:
            data = f'{name}.onnx.data'
            onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data, size_threshold=0)
        target = default_target(proto)
        entries = []
        for i in range(IMAGES):
            a = net.features(x[i:i + 1]).detach().requires_grad_(True)
            logits = net.head(a)
            probs = F.softmax(logits, 1)
            top = int(probs[0].argmax())
            entry = {'logits': logits[0].tolist(), 'probabilities': probs[0].tolist(), 'top1': top, 'cams': {}}
            for cls in (top, 3):
                for score in ('logit', 'prob'):
                    s = (logits if score == 'logit' else probs)[0, cls]
                    (g,) = torch.autograd.grad(s, a, retain_graph=True)
                    maps = cams(a[0].detach(), g[0])
                    for method, m in maps.items():
                        entry['cams'][f'{method}/{score}/{cls}'] = m.flatten().tolist()
            entries.append(entry)
        h, w = a.shape[2], a.shape[3]
        summary['models'][name] = {'file': f'{name}.onnx', 'opset': opset, 'nhwc': nhwc, 'dynamicBatch': dynamic, 'externalData': external, 'target': target, 'camHeight': h, 'camWidth': w, 'results': entries}
        print(name, 'target', target, 'cam', h, 'x', w, 'bytes', os.path.getsize(path), file=sys.stderr)
    with open(os.path.join(out_dir, 'reference.json'), 'w') as f:
        json.dump(summary, f)


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'test/fixtures/onnx')
