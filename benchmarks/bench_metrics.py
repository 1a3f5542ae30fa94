"""Metric speed: RMA, RRA and AOPC from xaibias.analysis against Quantus, with the values checked.

Data: N relevance maps of 64 x 64 (float64 normal noise, so Quantus does not round) with one random
rectangular ground-truth mask each, the images behind them and an untrained ``small_vgg``.

Rows:

- RMA: ``relevance_mass_accuracy(R, masks, relevance_mode="signed")`` vs
  ``quantus.RelevanceMassAccuracy(abs=False)``;
- RRA: ``relevance_rank_accuracy(R, masks, relevance_mode="signed")`` vs
  ``quantus.RelevanceRankAccuracy(abs=False)``;
- AOPC: ``aopc(..., steps=100, patch=9, perturbation=0.0, output="logit")`` vs
  ``quantus.RegionPerturbation(patch_size=9, regions_evaluation=100, perturb_baseline=0.0)``
  (mean of its curve); a 64 px image has 8 x 8 = 64 regions of 9 x 9, so both stop after 64
  steps; and the floor: the N x (64 + 1) forward passes alone, in batches of the same size.

The largest absolute difference between the two libraries' per-image values is reported.
Targets (issue 9): RMA and RRA at least 100 times faster than Quantus; AOPC at most 1.2 times the
time of its forward passes.

Usage: python benchmarks/bench_metrics.py [--quick] [--json PATH] [--n 1000]
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from _common import interleaved_times, machine, parser, report, timed

import xaibias as xb
from xaibias.analysis import aopc, relevance_mass_accuracy, relevance_rank_accuracy


def make_data(n: int, size: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, size, size)).astype(np.float32)
    a = rng.normal(size=(n, 1, size, size))
    s = np.zeros((n, 1, size, size), dtype=bool)
    r0 = rng.integers(0, size - 16, n)
    c0 = rng.integers(0, size - 16, n)
    hh = rng.integers(4, 16, n)
    ww = rng.integers(4, 16, n)
    for i in range(n):
        s[i, 0, r0[i]:r0[i] + hh[i], c0[i]:c0[i] + ww[i]] = True
    return x, a, s


def forward_floor(model, x: torch.Tensor, n_pass: int, batch: int, dev: str) -> float:
    """Time of ``n_pass`` images through ``model`` in batches (no grad), cycling over ``x``."""
    idx = torch.arange(n_pass) % len(x)

    def run():
        with torch.no_grad():
            for s in range(0, n_pass, batch):
                model(x[idx[s:s + batch]].to(dev))

    t, _ = timed(run, dev)
    return t


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="maps (default 1000; --quick: 8)")
    ap.add_argument("--aopc-n", type=int, default=None, help="maps for the AOPC row (default: --n)")
    ap.add_argument("--batch", type=int, default=64,
                    help="images per forward pass in AOPC (default 64: Quantus perturbs one region of every "
                         "image per pass, so with 64 maps its passes hold 64 images too)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; --quick: 1)")
    args = ap.parse_args(argv)
    import quantus

    warnings.filterwarnings("ignore")
    n = args.n or (8 if args.quick else 1000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    dev = args.device or xb.config.device()
    info = machine(dev)
    x, a, s = make_data(n)
    y = np.zeros(n, dtype=int)
    if args.quick:  # a tiny network keeps the 8 x 65 forward passes instant
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                    torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval().to(dev)
    else:
        model = xb.models.make_model("small_vgg", num_classes=2, seed=0).eval().to(dev)
    rows: list[dict] = []

    # --- RMA and RRA (no model calls in xaibias; Quantus receives the model it asks for)
    R, S = torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0])
    kw = dict(model=model.cpu(), x_batch=x, y_batch=y, a_batch=a, s_batch=s)
    for label, ours_fn, q_metric in (
        ("RMA", lambda: relevance_mass_accuracy(R, S, relevance_mode="signed"),
         lambda: quantus.RelevanceMassAccuracy(abs=False, disable_warnings=True)),
        ("RRA", lambda: relevance_rank_accuracy(R, S, relevance_mode="signed"),
         lambda: quantus.RelevanceRankAccuracy(abs=False, disable_warnings=True)),
    ):
        ours_fn()  # warm-up
        res: dict = {}
        times = interleaved_times({"ours": lambda f=ours_fn, r=res: r.__setitem__("ours", f().numpy()),
                                   "quantus": lambda m=q_metric, r=res: r.__setitem__("q", np.asarray(m()(**kw), dtype=float))},
                                  repeats=args.repeats, warmup=0)
        t_ours, t_q = min(times["ours"]), min(times["quantus"])
        rows.append({"metric": label, "n": n, "xaibias_s": t_ours, "quantus_s": t_q, "speedup": t_q / t_ours,
                     "max_abs_diff": float(np.nanmax(np.abs(res["ours"] - res["q"])))})
    model.to(dev)

    # --- AOPC: ours vs Quantus vs the forward passes alone
    na = min(args.aopc_n or n, n)
    x, a, y = x[:na], a[:na], y[:na]
    xt = torch.from_numpy(x)
    regions = math.ceil(64 / 9) ** 2  # 8 x 8: border regions are cut, not dropped
    n_pass = na * (regions + 1)
    metric = quantus.RegionPerturbation(patch_size=9, order="morf", regions_evaluation=100, perturb_baseline=0.0,
                                        disable_warnings=True, display_progressbar=False)
    res = {}
    times = interleaved_times({
        "floor": lambda: forward_floor(model, xt, n_pass, args.batch, dev),
        "ours": lambda: res.__setitem__("ours", aopc(model, xt, a[:, 0], target=torch.from_numpy(y), steps=100, patch=9,
                                                     perturbation=0.0, output="logit", batch_size=args.batch,
                                                     progress=False)),
        "quantus": lambda: res.__setitem__("q", np.asarray(metric(model=model, x_batch=x, y_batch=y,
                                                                  a_batch=a.astype(np.float32), softmax=False,
                                                                  device=dev, batch_size=args.batch))),
    }, repeats=args.repeats, warmup=0, device=dev)
    floor, t_ours, t_q = min(times["floor"]), min(times["ours"]), min(times["quantus"])
    ours, curves = res["ours"], res["q"]
    rows.append({"metric": "AOPC (region perturbation)", "n": na, "xaibias_s": t_ours, "quantus_s": t_q,
                 "speedup": t_q / t_ours, "forward_s": floor, "x_forward": t_ours / floor,
                 "quantus_x_forward": t_q / floor,
                 "max_abs_diff": float(np.max(np.abs(ours.numpy() - curves.mean(axis=1))))})

    summary = {
        "RMA: >= 100x faster than Quantus": bool(rows[0]["speedup"] >= 100),
        "RRA: >= 100x faster than Quantus": bool(rows[1]["speedup"] >= 100),
        "AOPC: <= 1.2x its forward passes": bool(rows[2]["x_forward"] <= 1.2),
        "forward passes AOPC needs": n_pass,
    }
    notes = [f"every time is the fastest of {args.repeats} interleaved runs (xaibias, Quantus and the forward passes "
             "take turns, so a change of load hits all of them)",
             "AOPC: a is passed to Quantus as float32 (its perturbation code casts); values agree within max_abs_diff"]
    if args.quick:
        notes.append("quick run: 8 maps and a tiny network instead of small_vgg; the numbers say nothing about speed")
    columns = [("metric", "metric"), ("n", "maps"), ("xaibias_s", "xaibias s"), ("quantus_s", "Quantus s"),
               ("speedup", "Quantus / xaibias"), ("forward_s", "forward passes s"), ("x_forward", "xaibias / forward"),
               ("quantus_x_forward", "Quantus / forward"), ("max_abs_diff", "max abs diff")]
    return report("bench_metrics", args, info, rows, columns, summary, notes)


if __name__ == "__main__":
    main()
