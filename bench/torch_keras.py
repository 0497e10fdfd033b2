"""The published Keras models as eager PyTorch ops, for the comparison scripts
(compare_pytorch_cpu.py, compare_pytorch_gpu.py).

PyTorch runs the Keras semantics of docs/domain.md (TF 'same' padding with the extra pixel
after, BatchNorm in inference mode with the config's epsilon, SeparableConv2D = depthwise then
pointwise, channels-last Flatten into Dense), float32, eager, BatchNorm folded into the preceding
conv as stimloop does. Import after setting thread counts: importing torch starts its runtime.
"""
import io
import json
import zipfile

import h5py
import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

MEANS = (116.222, 109.270, 100.381)  # re-centering: raw RGB minus these (docs/domain.md)


class TorchKeras:
    """A sequential .keras compact/shared model as a list of torch ops (float32)."""
    AUTO = {"Conv2D": "conv2d", "SeparableConv2D": "separable_conv2d",
            "DepthwiseConv2D": "depthwise_conv2d", "BatchNormalization": "batch_normalization",
            "Dense": "dense"}

    def __init__(self, path, device="cpu"):
        z = zipfile.ZipFile(path)
        layers = json.loads(z.read("config.json"))["config"]["layers"]
        h5 = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
        seen, self.ops, self.macs = {}, [], 0
        for layer in layers:
            cls, cfg = layer["class_name"], layer["config"]
            if cls == "InputLayer":
                continue
            var = []
            if cls in self.AUTO:  # HDF5 group: Keras' per-class auto name, not cfg["name"]
                base = self.AUTO[cls]
                group = base if base not in seen else f"{base}_{seen[base]}"
                seen[base] = seen.get(base, 0) + 1
                vs = h5["layers"][group]["vars"]
                var = [np.asarray(vs[k], dtype=np.float64) for k in sorted(vs, key=int)]
            shape = layer.get("build_config", {}).get("input_shape")  # [None, H, W, C]
            if (cfg.get("activation", "linear") != ("relu" if cls == "Activation" else "linear")
                    or cfg.get("dilation_rate", [1, 1]) != [1, 1]
                    or cfg.get("groups", 1) != 1 or cfg.get("depth_multiplier", 1) != 1):
                raise ValueError(f"{path}: unsupported option in {cls} ({cfg.get('name')})")
            if cls == "Conv2D":
                self._conv(var[0].transpose(3, 2, 0, 1), var[1], cfg, shape, 1)
            elif cls == "SeparableConv2D":  # depthwise (no bias), then pointwise with the bias
                self._conv(var[0].transpose(2, 3, 0, 1), None, cfg, shape, shape[3])
                self._conv(var[1].transpose(3, 2, 0, 1), var[2], {"strides": [1, 1],
                           "padding": "valid"}, [None, *self.out_hw, shape[3]], 1)
            elif cls == "DepthwiseConv2D":
                self._conv(var[0].transpose(2, 3, 0, 1), var[1], cfg, shape, shape[3])
            elif cls == "BatchNormalization":  # fold: scale the last conv's output channels
                gamma, beta, mean, variance = var
                scale = gamma / np.sqrt(variance + cfg["epsilon"])
                conv = self.ops[-1]
                conv["w"] = conv["w"] * scale[:, None, None, None]
                conv["b"] = (conv["b"] - mean) * scale + beta
            elif cls == "Activation":
                self.ops.append({"op": "relu"})
            elif cls == "Flatten":
                self.ops.append({"op": "flatten"})
            elif cls == "Dense":
                self.ops.append({"op": "dense", "w": var[0].T, "b": var[1]})
                self.macs += var[0].size
            else:
                raise ValueError(f"{path}: unsupported layer {cls} ({cfg.get('name')})")
        for op in self.ops:  # float32 tensors, constant (no autograd on weights)
            for key in ("w", "b"):
                if key in op:
                    op[key] = torch.from_numpy(
                        np.ascontiguousarray(op[key], dtype=np.float32)).to(device)

    def _conv(self, w_oihw, bias, cfg, in_shape, groups):
        _, h, w, cin = in_shape
        kh, kw = w_oihw.shape[2:]
        sh, sw = cfg["strides"]
        pads = []
        for n, k, s in ((h, kh, sh), (w, kw, sw)):  # TensorFlow 'same': the extra pixel after
            out = -(-n // s) if cfg["padding"] == "same" else (n - k) // s + 1
            total = max((out - 1) * s + k - n, 0) if cfg["padding"] == "same" else 0
            pads.append((total // 2, total - total // 2, out))
        (t, b, oh), (left, r, ow) = pads
        symmetric = t == b and left == r
        cout = w_oihw.shape[0]
        self.ops.append({"op": "conv", "w": w_oihw, "stride": (sh, sw), "groups": groups,
                         "b": np.zeros(cout) if bias is None else bias,
                         "padding": (t, left) if symmetric else 0,
                         "pre_pad": None if symmetric else (left, r, t, b)})
        self.out_hw = (oh, ow)
        self.macs += oh * ow * kh * kw * (cin // groups) * cout

    def __call__(self, x_nhwc):
        """x: (N, 112, 112, 3) re-centered float32 -> (N, outputs).
        The NHWC input viewed as NCHW is a channels_last tensor (no copy), and oneDNN keeps
        that layout throughout: 1.5-1.8x faster here than contiguous NCHW."""
        x = x_nhwc.permute(0, 3, 1, 2)
        for op in self.ops:
            kind = op["op"]
            if kind == "conv":
                if op["pre_pad"]:
                    x = F.pad(x, op["pre_pad"])
                x = F.conv2d(x, op["w"], op["b"], op["stride"], op["padding"], 1, op["groups"])
            elif kind == "relu":
                x = torch.relu(x)
            elif kind == "flatten":  # Keras' (h, w, c) order: free for channels_last memory
                x = x.permute(0, 2, 3, 1).flatten(1)
            else:
                x = F.linear(x, op["w"], op["b"])
        return x

    def input_gradient(self, x_nhwc):
        """d(mean output)/d(input), as the synthesis loop needs it; weights stay constant."""
        with torch.enable_grad():
            x = x_nhwc.detach().requires_grad_(True)
            out = self(x)
            (grad,) = torch.autograd.grad(out.mean(), x)
        return out.detach(), grad


def torch_cowley2026(model, steps, seed=0, device="cpu"):
    """class_synth.optimize_synth_image(opt='max'): image state float64 in numpy, model float32.
    Per step a gradient pass and a forward pass, as the authors' loop does."""
    np.random.seed(seed)
    lo, hi = -np.asarray(MEANS), 255.0 - np.asarray(MEANS)
    img = np.random.uniform(size=(1, 112, 112, 3)) * 50 + 128 - np.asarray(MEANS)
    best, best_img = 0.0, img.copy()  # the authors' best-so-far starts at 0 when maximizing
    for step in range(steps):
        _, g = model.input_gradient(torch.from_numpy(img.astype(np.float32)).to(device))
        g = g.cpu().numpy().astype(np.float64)
        g /= np.sqrt(np.mean(g * g)) + 1e-5
        g = scipy.ndimage.gaussian_filter(g, (0.0, 1.0, 1.0, 0.0))  # mode 'reflect', 4 sigma
        img = np.clip(img + 10.0 * g, lo, hi)
        response = float(model(torch.from_numpy(img.astype(np.float32)).to(device))[0, 0])
        if response > best:
            best, best_img = response, img.copy()
        if step % 50 == 0 and step > 0:
            img = scipy.ndimage.gaussian_filter(img, (0.0, 1.0, 1.0, 0.0))
    raw = np.clip(np.rint(best_img + np.asarray(MEANS)), 0, 255)  # the 8-bit stimulus, as a rig
    x = torch.from_numpy((raw - np.asarray(MEANS)).astype(np.float32)).to(device)
    return float(model(x)[0, 0])


