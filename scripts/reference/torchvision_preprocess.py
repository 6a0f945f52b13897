#!/usr/bin/python3
"""Reference outputs for every preprocessing mode, with and without torchvision's center crop.

Independent of the TypeScript code: the geometry comes from Pillow (whole-image resize, as
`keras.utils.load_img(target_size=...)`) or from torchvision's own transforms

    transforms.Resize(round(256 / 224 * min(h, w)), interpolation)   # shorter side, PIL kernel
    transforms.CenterCrop((h, w))

and the values from the libraries that define each mode:

    caffe  NumPy, as keras.applications.imagenet_utils (RGB->BGR, minus the ImageNet BGR mean)
    tf     NumPy, as Keras mode="tf"  (x /= 127.5; x -= 1.)
    torch  torchvision ToTensor() + Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    raw    torchvision ToTensor()
    none   NumPy, the RGB values as float32 (Keras EfficientNet's pass-through preprocess_input)

Inputs are the committed parity images (test/fixtures/images/parity/, see pil_preprocess.py).
Model input sizes: 224x224, an odd square (99x99: crop offsets that round half to even) and an
odd non-square (h=57, w=75). Output: test/fixtures/images/reference/preprocess-modes.json with the
geometry (resized size, crop offsets), the sha256 of the RGB crop and of each mode's HWC float32
buffer, and sampled values for readable failures. CI never runs Python.

    /usr/bin/python3 scripts/reference/torchvision_preprocess.py
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "test" / "fixtures" / "images" / "parity"
OUT = ROOT / "test" / "fixtures" / "images" / "reference" / "preprocess-modes.json"
SIZES = [(224, 224), (99, 99), (57, 75)]  # (height, width) of the model input
KERNELS = {"nearest": (Image.NEAREST, InterpolationMode.NEAREST), "bilinear": (Image.BILINEAR, InterpolationMode.BILINEAR)}
MEAN_BGR = [103.939, 116.779, 123.68]
MEAN_RGB = [0.485, 0.456, 0.406]
STD_RGB = [0.229, 0.224, 0.225]


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def load_rgb(path):
    img = Image.open(path)
    return img if img.mode == "RGB" else img.convert("RGB")


def values(mode, img):
    """HWC float32 model input from a PIL RGB image."""
    if mode == "caffe":
        x = np.asarray(img, dtype="float32")[..., ::-1].copy()
        for c in range(3):
            x[..., c] -= MEAN_BGR[c]
        return x
    if mode == "none":
        return np.asarray(img, dtype="float32").copy()
    if mode == "tf":
        x = np.asarray(img, dtype="float32").copy()
        x /= 127.5
        x -= 1.0
        return x
    t = transforms.ToTensor()(img)
    if mode == "torch":
        t = transforms.Normalize(MEAN_RGB, STD_RGB)(t)
    return t.permute(1, 2, 0).contiguous().numpy()


def main():
    rng = np.random.default_rng(11)
    cases = []
    for path in sorted(INPUTS.iterdir()):
        decoded = load_rgb(path)
        for h, w in SIZES:
            for kernel, (pil_kernel, tv_kernel) in KERNELS.items():
                for center_crop in (False, True):
                    geometry = {}
                    if center_crop:
                        side = round(256 / 224 * min(h, w))
                        resized = transforms.Resize(side, interpolation=tv_kernel)(decoded)
                        fitted = transforms.CenterCrop((h, w))(resized)
                        geometry = {"resizedWidth": resized.size[0], "resizedHeight": resized.size[1]}
                    else:
                        fitted = decoded if decoded.size == (w, h) else decoded.resize((w, h), pil_kernel)
                    assert fitted.size == (w, h)
                    rgb = np.asarray(fitted)
                    ys = rng.integers(0, h, 2)
                    xs = rng.integers(0, w, 2)
                    modes = {}
                    for mode in ("caffe", "tf", "torch", "raw", "none"):
                        x = values(mode, fitted).astype("<f4")
                        assert x.shape == (h, w, 3)
                        modes[mode] = {
                            "sha256": sha256(x),
                            "samples": [{"x": int(a), "y": int(b), "value": [float(v) for v in x[b, a]]} for a, b in zip(xs, ys)],
                        }
                    cases.append({
                        "input": path.name,
                        "height": h,
                        "width": w,
                        "resize": kernel,
                        "centerCrop": center_crop,
                        **geometry,
                        "rgbSha256": sha256(rgb),
                        "modes": modes,
                    })
    doc = {
        "generator": "scripts/reference/torchvision_preprocess.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
