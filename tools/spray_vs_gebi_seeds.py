"""Notebook 02's SpRAy-vs-GEBI comparison over any seeds: the table behind its reference results.

Usage:
    python tools/spray_vs_gebi_seeds.py [--seeds 0-4] [--fast | --full] [--threads N] [--csv FILE]

Per seed this does what notebook 02 (``notebooks/02_spray_vs_gebi.ipynb``) does in its seed loop,
through the same package functions and with the same settings:

1. synthetic lesions (difficulty 0.35 in FAST mode, 0.5 in the full setting) with the notebook's
   frame bias (P(frame | malignant) = 0.5, P(frame | benign) = 0.05 on top of the ``isic2018``
   preset), split 70/30, and the clean twin (frames equally common in both classes);
2. the frame-biased ``small_vgg`` from :func:`xaibias.models.fit_or_load` (cached like the notebook's);
3. LRP (``EpsilonPlusFlat``) for "malignant" on the malignant test images (about half of them
   framed); the *first* seed is treated like the notebook's own seed (a fifth of those images is
   held back for the notebook's explanation cards and not clustered), every other seed like the
   notebook's extra seeds (all of them are clustered);
4. :func:`xaibias.analysis.spray_vs_gebi` with ``n_boot``: SpRAy and GEBI (image weight 1, 10
   neighbours) at k = 2 and k = 4, frame F1 of the best cluster with its bootstrap interval, its
   gate against one all-in-one cluster and shuffled labels with the same cluster sizes, and the
   paired interval of GEBI - SpRAy;
5. test accuracy on the biased and on a clean test set (frames equally common in both classes)
   beside chance, and :func:`xaibias.analysis.bias_insertion` into benign test images (mean change
   of P(malignant) in pp, share flipped to malignant).

So ``--seeds 0-1 --fast`` reprints the seed table of the notebook run with ``XAIBIAS_SEED=0`` in
FAST mode, and ``--seeds 0-4 --full`` (or ``XAIBIAS_FAST=0``) the five-seed table of its full
setting (6,000 images of 64 px, 10 epochs; about 40 minutes on two CPU cores). Without ``--fast``
or ``--full`` the setting follows ``XAIBIAS_FAST`` as in the notebook.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch

import xaibias as xb
from xaibias.analysis.gebi import seed_summary
from xaibias.config import parse_seeds

# notebook 02's settings cell (synthetic data); tests/test_spray_vs_gebi_seeds.py checks they match
MODEL, SIZE = "small_vgg", 64
N_IMAGES = {True: 1600, False: 6000}  # FAST, full
EPOCHS = {True: 4, False: 10}
DIFFICULTY = {True: 0.35, False: 0.5}  # the full setting uses xb.data.RECOMMENDED_DIFFICULTY
N_NEIGHBORS = 10
N_CLUSTERS = 2
KS = (N_CLUSTERS, 4)
IMAGE_WEIGHT = 1.0
N_BOOT = {True: 500, False: 2000}
HELD_FRACTION = 0.2  # the notebook holds back this share of its own seed's images for the cards
MIN_IMAGES = 30
FRAME_BIAS = (0.5, 0.05)
NO_FRAME_BIAS = (0.275, 0.275)  # the clean twin: as many frames, in both classes alike


def one_seed(seed: int, fast: bool, held_out: bool, n_images: int | None = None, epochs: int | None = None,
             size: int = SIZE, device: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The notebook's per-seed comparison; returns the spray_vs_gebi rows and a dict of model numbers."""
    bias = dict(xb.data.BIAS_PRESETS["isic2018"], frame=FRAME_BIAS)
    ds = xb.data.SyntheticLesions(n=n_images or N_IMAGES[fast], size=size, bias=bias,
                                  difficulty=DIFFICULTY[fast], seed=seed)
    train, test = ds.split(test_fraction=0.3, seed=seed)
    _, clean = xb.data.SyntheticLesions(n=n_images or N_IMAGES[fast], size=size, bias=dict(bias, frame=NO_FRAME_BIAS),
                                        difficulty=DIFFICULTY[fast], seed=seed
                                        ).split(test_fraction=0.3, seed=seed)
    model = xb.models.fit_or_load(MODEL, (train.images, train.labels), epochs=epochs or EPOCHS[fast], seed=seed,
                                  num_classes=2, pretrained=False, device=device or xb.config.device())
    X_test, y_test, art_test = test.images, test.labels, test.artifacts
    acc = xb.models.evaluate(model, (X_test, y_test))["accuracy"]
    acc_clean = xb.models.evaluate(model, (clean.images, clean.labels))["accuracy"]
    sel = (y_test == 1).nonzero().flatten().numpy()  # the malignant test images
    if len(sel) < MIN_IMAGES:
        sel = np.arange(len(X_test))
    R = xb.explain.attribute(model, X_test[sel], target=1, method="lrp", composite="EpsilonPlusFlat")
    keep = ~(np.random.default_rng(seed).random(len(sel)) < HELD_FRACTION) if held_out else np.ones(len(sel), bool)
    X, R, art = X_test[sel[keep]], R[torch.as_tensor(keep)], art_test.iloc[sel[keep]].reset_index(drop=True)
    rows = xb.analysis.spray_vs_gebi(R, X, art[["frame"]], ks=KS, n_neighbors=N_NEIGHBORS,
                                     image_weight=IMAGE_WEIGHT, random_state=seed, n_boot=N_BOOT[fast])
    ins = xb.analysis.bias_insertion(model, X_test, y_test, artifacts=("frame", "ruler", "red_circle"),
                                     target_class=1, seed=seed, present=art_test, lesion_masks=test.masks["lesion"],
                                     class_names=["benign", "malignant"], progress=False)
    benign = ins[ins.true_class == "benign"].set_index("artifact")
    info = {"accuracy": acc, "clean accuracy": acc_clean,
            "majority": float(max(y_test.float().mean(), 1 - y_test.float().mean())),
            "clustered": len(X), "framed share": float(art["frame"].mean())}
    for a in ("frame", "ruler", "red_circle"):
        info[f"{a} pp"] = benign.loc[a, "mean_change_pp"]
    info["frame flips"] = benign.loc["frame", "to_target_rate"]
    return rows, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 or 0,2 (default 0-4)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true", help="FAST setting (1,600 images, 4 epochs)")
    mode.add_argument("--full", action="store_true", help="full setting (6,000 images, 10 epochs)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--csv", default=None, help="also write the per-seed rows to this CSV file")
    ap.add_argument("--n-images", type=int, default=None, help=argparse.SUPPRESS)  # smoke tests only
    ap.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=SIZE, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    fast = True if args.fast else False if args.full else xb.config.FAST
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = parse_seeds(args.seeds)
    print(f"notebook 02 comparison, {'FAST' if fast else 'full'} setting: {args.n_images or N_IMAGES[fast]} images "
          f"of {args.size} px, {args.epochs or EPOCHS[fast]} epochs, seeds {seeds}, {torch.get_num_threads()} threads")
    frames, infos = [], {}
    for i, seed in enumerate(seeds):
        start = time.perf_counter()
        rows, info = one_seed(seed, fast, held_out=i == 0, n_images=args.n_images, epochs=args.epochs, size=args.size)
        info["seconds"] = round(time.perf_counter() - start, 1)
        frames.append(rows.assign(seed=seed))
        infos[seed] = info
        print(f"  seed {seed} done in {info['seconds']} s", file=sys.stderr)
    rows = pd.concat(frames, ignore_index=True)
    if args.csv:
        rows.to_csv(args.csv, index=False)

    pd.set_option("display.width", 160)
    print("\nbiased model per seed (accuracy on the biased and the clean test set beside chance 0.50 and the "
          "majority-class rate; insertion into benign test images: mean change of P(malignant) in pp, share flipped "
          "to malignant by a frame)")
    print(pd.DataFrame(infos).T.rename_axis("seed").round(3).to_string())
    for k in KS:
        print(f"\nframe F1 of the best cluster at k = {k} per seed, 95 % intervals over the clustered maps; a method "
              "passes its gate when the low end clears one all-in-one cluster and the shuffled labels' 95th percentile; "
              "GEBI - SpRAy is paired over the same maps")
        print(seed_summary(rows, k=k).to_string())
        g = rows[(rows.k == k) & (rows.method == "GEBI") & (rows.artifact == "frame")]
        words = ["GEBI higher" if lo > 0 else "SpRAy higher" if hi < 0 else "not distinguishable"
                 for lo, hi in zip(g.diff_low, g.diff_high)]
        passes = rows[(rows.k == k) & (rows.artifact == "frame")].groupby("method")["passes_gate"].sum()
        print(f"  k = {k}: gate passed in {int(passes.get('SpRAy', 0))} (SpRAy) and {int(passes.get('GEBI', 0))} (GEBI) "
              f"of {len(g)} seeds; GEBI - SpRAy interval per seed: {', '.join(words)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
