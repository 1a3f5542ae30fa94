"""Score-CAM (Wang et al. 2020), batched; registered as ``attribute(method="scorecam")``.

Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu: *Score-CAM: Score-weighted visual explanations for
convolutional neural networks* (CVPR workshops 2020). Grad-CAM weights the feature maps of a
convolutional layer by gradients; Score-CAM replaces the gradient by a forward measurement:

1. take the K activation maps ``A_k`` of ``layer`` for the image, upsample each to the input size
   and scale it to [0, 1]: ``H_k = (up(A_k) - min) / (max - min)``;
2. show the model the image masked by each map, ``x * H_k``, and read the target-class softmax
   probability ``w_k = softmax(f(x * H_k))_t``;
3. the map is ``ReLU(sum_k w_k up(A_k))``.

The paper writes the weight as the *increase* of confidence ``f(x * H_k) - f(x_b)`` over a black
baseline; as in the authors' released code we use ``f(x * H_k)`` itself. Subtracting ``f(x_b)``
would lower every weight by the same constant and subtract a multiple of ``sum_k up(A_k)``.
Maps with a constant activation (for example all zero after a ReLU) carry no location and get
weight 0, also as in the authors' code.

All masked images of a batch (B images x K channels, constant maps skipped) go through the model in
chunks of ``batch_size``; bilinear upsampling is linear, so the weighted sum is formed at the
layer's resolution and upsampled once. ``channels=k`` keeps only the k maps with the largest mean
activation per image, a speed knob for wide layers (EfficientNet-B0 ends in 1280 channels); it is
off by default. Through :func:`~xaibias.explain.attribute` the keyword arguments are ``layer``,
``channels`` and ``mask_batch_size`` (attribute's own ``batch_size`` is the number of images per
call).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_images, describe, model_device
from .attribution import get_layer, register_method, resolve_target

__all__ = ["score_cam"]


def score_cam(
    model: nn.Module,
    images: torch.Tensor,
    target: int | torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
    batch_size: int = 256,
    channels: int | None = None,
) -> torch.Tensor:
    """Score-CAM maps, (N,H,W) float32 on the model's device.

    Parameters
    ----------
    model : nn.Module
        A CNN classifier returning logits; evaluated in eval mode without gradients.
    images : tensor (N,3,H,W) in [0,1]
        Input images (moved to the model's device).
    target : None, int or (N,) tensor
        Class to explain; ``None`` explains the prediction.
    layer : str, nn.Module or None
        The layer whose activation maps are used (a module name from ``named_modules()``);
        default: the last ``Conv2d``, as for Grad-CAM.
    batch_size : int
        Masked images per forward pass.
    channels : int or None
        Keep only this many maps per image (largest mean activation first); ``None`` keeps all.

    Returns
    -------
    torch.Tensor
        (N,H,W) non-negative maps, not normalised (divide by the maximum for display).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise ValueError(f"channels must be None or a positive int; got {channels!r}")
    dev = model_device(model)
    x = as_images(images, allow_single=True).to(dev, torch.float32)
    n, _, h, w = x.shape
    module = get_layer(model, layer)
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        captured.append(out.detach())

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(x)
            if logits.ndim != 2:
                raise ValueError(f"model must return logits (B,K); got shape {tuple(logits.shape)}")
            if not captured or captured[0].ndim != 4:
                got = describe(captured[0]) if captured else "nothing"
                raise ValueError(f"layer {layer!r} must output (B,K,h,w) activation maps; got {got}")
            acts = captured[0]
            handle.remove()
            t = resolve_target(target, n, logits).to(dev)
            k = acts.shape[1]
            flat = acts.reshape(n, k, -1)
            lo, hi = flat.amin(dim=2), flat.amax(dim=2)
            use = hi > lo  # constant maps carry no location
            if channels is not None and channels < k:
                top = flat.mean(dim=2).topk(channels, dim=1).indices
                keep = torch.zeros_like(use)
                keep.scatter_(1, top, True)
                use &= keep
            pairs = use.nonzero()  # (P, 2): image index, channel index
            weights = torch.zeros(n, k, device=dev, dtype=torch.float32)
            for s in range(0, len(pairs), batch_size):
                b, c = pairs[s : s + batch_size, 0], pairs[s : s + batch_size, 1]
                maps = F.interpolate(acts[b, c].unsqueeze(1).float(), size=(h, w), mode="bilinear",
                                     align_corners=False)
                mn = maps.amin(dim=(2, 3), keepdim=True)
                mx = maps.amax(dim=(2, 3), keepdim=True)
                masks = (maps - mn) / (mx - mn).clamp(min=1e-12)
                probs = model(x[b] * masks).softmax(dim=1)
                weights[b, c] = probs.gather(1, t[b].unsqueeze(1)).squeeze(1)
            cam = (weights[:, :, None, None] * acts.float()).sum(dim=1, keepdim=True)
            cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False).squeeze(1)
    finally:
        handle.remove()
        model.train(was_training)
    return cam.clamp(min=0)


@register_method("scorecam", channels=False)
def _scorecam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | nn.Module | None = None,
              mask_batch_size: int = 256, channels: int | None = None) -> torch.Tensor:
    # attribute(batch_size=...) sets the images per call; mask_batch_size the masked images per pass.
    return score_cam(model, x, target, layer=layer, batch_size=mask_batch_size, channels=channels)
