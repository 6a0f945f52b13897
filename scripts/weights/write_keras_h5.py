#!/usr/bin/env python3
"""Independent writer for Keras HDF5 weight fixtures, using h5py the way Keras' save_weights does.

The Node loader must read files written by the real tool chain (h5py, fixed-length byte-string
attributes), not only files written by our own h5wasm writer. Weights follow a closed formula, so
the TypeScript test can recompute them without Python:

    value(L, j, i) = float32(0.1 * sin(0.37 * i + 1.3 * L + 0.7 * j))

L = index of the weighted layer (0-based), j = 0 for the kernel and 1 for the bias, i = flat
row-major index. Run with Debian's python3-h5py: /usr/bin/python3 scripts/weights/write_keras_h5.py
"""
import os
import sys

import h5py
import numpy as np

# Must match test/unit/model/h5py-fixtures.test.ts (vggShapedArchitecture of FIXTURE_OPTIONS).
INPUT = (16, 16, 3)
LAYERS = [
    ("block1_conv1", "conv", 4),
    ("block1_pool", "pool", None),
    ("block2_conv1", "conv", 8),
    ("block2_pool", "pool", None),
    ("flatten", "flatten", None),
    ("fc1", "dense", 16),
    ("predictions", "dense", 5),
]


def value(layer_index, j, shape):
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    return (0.1 * np.sin(0.37 * i + 1.3 * layer_index + 0.7 * j)).astype(np.float32).reshape(shape)


def weights():
    h, w, c = INPUT
    out = []
    for name, kind, units in LAYERS:
        if kind == "conv":
            out.append((name, [value(len(out), 0, (3, 3, c, units)), value(len(out), 1, (units,))]))
            c = units
        elif kind == "pool":
            h, w = h // 2, w // 2
        elif kind == "flatten":
            c = h * w * c
        else:
            out.append((name, [value(len(out), 0, (c, units)), value(len(out), 1, (units,))]))
            c = units
    return dict(out)


def write(path, style):
    by_layer = weights()
    with h5py.File(path, "w") as f:
        names = ["input_1"] + [n for n, _, _ in LAYERS]
        # np.asarray of byte strings gives fixed-length "S" arrays, as Keras' save_attributes_to_hdf5_group.
        f.attrs["layer_names"] = np.asarray([n.encode("utf8") for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.2" if style == "legacy" else b"2.12.0"
        for name in names:
            g = f.create_group(name)
            arrays = by_layer.get(name, [])
            if style == "legacy":
                weight_names = [f"{name}_{s}_1:0" for s in ("W", "b")][: len(arrays)]
            else:
                weight_names = [f"{name}/{s}:0" for s in ("kernel", "bias")][: len(arrays)]
            g.attrs["weight_names"] = np.asarray([n.encode("utf8") for n in weight_names], dtype="S")
            for weight_name, array in zip(weight_names, arrays):
                g.create_dataset(weight_name, array.shape, dtype=array.dtype)[:] = array


VGG16_BLOCKS = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


def vgg16_shapes():
    """(layer name, [kernel shape, bias shape]) for keras.applications.VGG16, in layer order."""
    layers, c = [], 3
    for b, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, convs + 1):
            layers.append((f"block{b}_conv{i}", [(3, 3, c, filters), (filters,)]))
            c = filters
        layers.append((f"block{b}_pool", []))
    layers.append(("flatten", []))
    for name, n_in, n_out in (("fc1", 25088, 4096), ("fc2", 4096, 4096), ("predictions", 4096, 1000)):
        layers.append((name, [(n_in, n_out), (n_out,)]))
    return layers


def write_hollow_vgg16(path, override=None):
    """The layout of vgg16_weights_tf_dim_ordering_tf_kernels.h5 (legacy names, full shapes) with
    unallocated datasets: a few KB on disk, so loaders can be tested on the real structure."""
    with h5py.File(path, "w") as f:
        layers = vgg16_shapes()
        f.attrs["layer_names"] = np.asarray([b"input_1"] + [n.encode("utf8") for n, _ in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.2"
        f.create_group("input_1").attrs["weight_names"] = np.asarray([], dtype="S1")
        for name, shapes in layers:
            g = f.create_group(name)
            names = [f"{name}_{s}_1:0" for s in ("W", "b")][: len(shapes)]
            g.attrs["weight_names"] = np.asarray([n.encode("utf8") for n in names], dtype="S")
            for weight_name, shape in zip(names, shapes):
                if override and weight_name in override:
                    shape = override[weight_name]
                g.create_dataset(weight_name, shape, dtype="<f4")


if __name__ == "__main__":
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/model"
    os.makedirs(out_dir, exist_ok=True)
    for style in ("legacy", "modern"):
        path = os.path.join(out_dir, f"h5py-{style}.h5")
        write(path, style)
        print(path, os.path.getsize(path), "bytes")
    for name, override in (("vgg16-hollow.h5", None), ("vgg16-hollow-bad-block4_conv2.h5", {"block4_conv2_W_1:0": (3, 3, 256, 512)})):
        path = os.path.join(out_dir, name)
        write_hollow_vgg16(path, override)
        print(path, os.path.getsize(path), "bytes")
