#!/usr/bin/python3
"""Reference outputs for Keras-exact preprocessing, computed with Pillow and NumPy.

Reproduces what `keras.utils.load_img(path, target_size=(224, 224), interpolation=...)` followed by
`keras.applications.vgg16.preprocess_input` does (Keras 2.x/3.x sources):

    img = PIL.Image.open(path)
    if img.mode != 'RGB': img = img.convert('RGB')       # alpha dropped, gray replicated, CMYK formula
    if img.size != (224, 224): img = img.resize((224, 224), PIL.Image.NEAREST)   # or BILINEAR
    x = np.asarray(img, dtype='float32')                  # img_to_array
    x = x[..., ::-1]; x[..., 0] -= 103.939; x[..., 1] -= 116.779; x[..., 2] -= 123.68

Keras itself is not needed (nor installed): the steps above are all it does for these inputs.

Usage (Debian python3-pil and python3-numpy; /usr/bin/python3, not a pyenv shim):

    /usr/bin/python3 scripts/reference/pil_preprocess.py [--write-inputs]

--write-inputs regenerates the (deterministic) input images in test/fixtures/images/parity/; without
it the committed inputs are read. Outputs go to test/fixtures/images/reference/:
  <input>.<mode>.png   the 224x224 RGB result of load_img (lossless)
  preprocess.json      sha256 of every decoded/resized/preprocessed buffer, plus sampled values
The TypeScript tests compare against these files; CI never runs Python.
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "test" / "fixtures" / "images" / "parity"
OUT = ROOT / "test" / "fixtures" / "images" / "reference"
TARGET = (224, 224)  # (width, height), as PIL takes it
MEAN_BGR = [103.939, 116.779, 123.68]
MODES = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR}


def coordinate_pattern(width, height):
    """R = x mod 256, G = y mod 256, B mixes both: a wrong source index shows up in R or G."""
    x = np.arange(width)[None, :].repeat(height, 0)
    y = np.arange(height)[:, None].repeat(width, 1)
    r = x % 256
    g = y % 256
    b = ((x >> 8) * 64 + (y >> 8) * 16 + (x * 3 + y * 5) % 16) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def photo_like(width, height, rng):
    """Smooth colour fields plus mild noise, the kind of content lossy JPEG is made for."""
    x = np.linspace(0, 1, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    r = 128 + 100 * np.sin(6 * x + 2 * y)
    g = 128 + 100 * np.cos(4 * y - 3 * x)
    b = 255 * x * y
    img = np.stack([r + 0 * y, g + 0 * x, b], axis=-1) + rng.normal(0, 6, (height, width, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_inputs():
    INPUTS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261125)
    Image.fromarray(coordinate_pattern(333, 217), "RGB").save(INPUTS / "rgb-333x217.png")
    Image.fromarray(coordinate_pattern(97, 401), "RGB").save(INPUTS / "rgb-97x401.png")
    Image.fromarray(coordinate_pattern(50, 31), "RGB").save(INPUTS / "small-50x31.png")
    Image.fromarray(coordinate_pattern(224, 224), "RGB").save(INPUTS / "rgb-224x224.png")
    Image.fromarray(coordinate_pattern(640, 427), "RGB").save(INPUTS / "rgb-640x427.png")
    gray = ((np.arange(150)[None, :] * 3 + np.arange(90)[:, None] * 7) % 256).astype(np.uint8)
    Image.fromarray(gray, "L").save(INPUTS / "gray-150x90.png")
    rgba = np.concatenate([coordinate_pattern(123, 77), rng.integers(0, 256, (77, 123, 1), dtype=np.uint8)], axis=-1)
    rgba[::3, ::2, 3] = 0  # fully transparent pixels that still carry colour
    Image.fromarray(rgba, "RGBA").save(INPUTS / "rgba-123x77.png")
    pal = Image.fromarray(rng.integers(0, 16, (45, 61), dtype=np.uint8), "P")
    pal.putpalette(list(rng.integers(0, 256, 16 * 3, dtype=np.uint8).tolist()))
    pal.save(INPUTS / "palette-61x45.png")
    Image.fromarray(photo_like(333, 217, rng), "RGB").save(INPUTS / "photo-333x217.jpg", quality=90)
    cmyk = rng.integers(0, 256, (37, 45, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(INPUTS / "cmyk-45x37.tiff")
    la = np.stack([gray[:53, :71], rng.integers(0, 256, (53, 71), dtype=np.uint8)], axis=-1)
    Image.fromarray(la, "LA").save(INPUTS / "la-71x53.png")
    trns = Image.fromarray(rng.integers(0, 8, (45, 61), dtype=np.uint8), "P")
    trns.putpalette(list(rng.integers(0, 256, 8 * 3, dtype=np.uint8).tolist()))
    trns.save(INPUTS / "palette-trns-61x45.png", transparency=3)  # index 3 transparent, colour kept


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def load_img_rgb(path):
    img = Image.open(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def preprocess_input(rgb_uint8):
    x = np.asarray(rgb_uint8, dtype="float32").copy()
    x = x[..., ::-1].copy()
    for c in range(3):
        x[..., c] -= MEAN_BGR[c]
    return x


def main():
    if "--write-inputs" in sys.argv:
        write_inputs()
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    cases = []
    for path in sorted(INPUTS.iterdir()):
        source = Image.open(path)
        decoded = load_img_rgb(path)
        rgb = np.asarray(decoded)
        case = {
            "input": path.name,
            "pilMode": source.mode,
            "width": decoded.size[0],
            "height": decoded.size[1],
            "decodedSha256": sha256(rgb),
            "outputs": {},
        }
        for mode, resample in MODES.items():
            resized = decoded if decoded.size == TARGET else decoded.resize(TARGET, resample)
            arr = np.asarray(resized)
            name = f"{path.stem}.{mode}.png"
            Image.fromarray(arr, "RGB").save(OUT / name, optimize=True)
            pre = preprocess_input(arr)
            ys = rng.integers(0, TARGET[1], 8)
            xs = rng.integers(0, TARGET[0], 8)
            case["outputs"][mode] = {
                "file": name,
                "rgbSha256": sha256(arr),
                "preprocessedSha256": sha256(pre.astype("<f4")),
                "samples": [
                    {"x": int(x), "y": int(y), "rgb": arr[y, x].tolist(), "bgrMinusMean": [float(v) for v in pre[y, x]]}
                    for x, y in zip(xs, ys)
                ],
            }
        cases.append(case)
    doc = {
        "generator": "scripts/reference/pil_preprocess.py",
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "target": list(TARGET),
        "meanBgr": MEAN_BGR,
        "cases": cases,
    }
    (OUT / "preprocess.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
