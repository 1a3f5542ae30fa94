"""Clustering at scale: SpRAy and GEBI against CoRelAy and a plain scikit-learn pipeline.

Data: N relevance maps of 32 x 32 with 4 planted clusters (each cluster puts a blob of relevance
at its own place, jittered, on top of a shared "lesion" blob and noise) and, for GEBI, images that
carry a matching coloured patch. Every configuration runs in a fresh subprocess (after one untimed
warm-up fit on 300 other maps, the same for every method, so that first-call costs count for none), so its peak
memory is its own (the kernel's peak-RSS mark is reset right before the fit and read after it).

Rows:

- ``xaibias SpRAy``: ``SpRAy(n_clusters=4).fit(R)`` (downsize, L2-normalise, PCA, sparse kNN,
  ARPACK eigenvectors, k-means on the leading ones; from 50,000 maps on the spectral step runs on
  20,000 landmarks and every other map takes its nearest landmarks' vote);
- ``xaibias GEBI``: ``GEBI(n_clusters=4).fit(R, images)`` (maps and images);
- ``CoRelAy SpectralClustering``: CoRelAy's default pipeline (all pairwise distances, kNN 10,
  symmetric normalised Laplacian, 32 eigenvectors, k-means with 4 clusters on all of them) on the
  flattened L2-normalised maps; skipped with a note when corelay is not installed
  (``pip install corelay``) or when the machine lacks the memory its N x N matrices need;
- ``sklearn kNN + eigsh + k-means``: what a user writes by hand on the same features:
  ``kneighbors_graph`` (10 neighbours), the normalised affinity, ``eigsh`` (32 eigenpairs),
  k-means on the 4 leading eigenvectors.

Targets (issue 9): 20,000 maps in under 6 s and under 1 GB on 2 cores, ARI >= 0.99, ahead of both
baselines at every N. Issue 19: 1,000,000 maps read from HDF5, SpRAy under 60 s and 4 GB for the
whole process, GEBI under 120 s and 6 GB, ARI >= 0.99. The growth exponent b of time ~ N^b comes
from a log-log fit.

Above N = 20,000 (or with ``--input hdf5``) the maps are generated chunk by chunk into an HDF5 file
in ``--data-dir`` (:func:`planted_h5`, reused when present) and xaibias reads them from there in
chunks; the baselines load them into memory.

Usage: python benchmarks/bench_clustering.py [--quick] [--json PATH] [--sizes 1000 5000 20000]
       [--input auto|memory|hdf5] [--data-dir DIR] [--baseline-max-n N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    loglog_slope,
    machine,
    mem_available_gb,
    parser,
    peak_rss_mb,
    report,
    reset_peak_rss,
    rss_mb,
)

METHODS = ("xaibias SpRAy", "xaibias GEBI", "CoRelAy SpectralClustering", "sklearn kNN + eigsh + k-means")
K = 4


def planted_chunks(n: int, k: int = K, size: int = 32, seed: int = 0, chunk: int = 2048):
    """Yield ``(start, R, X, labels)`` chunks of :func:`planted` (same random stream, same values)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % k)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angles = 2 * np.pi * np.arange(k) / k + np.pi / 4
    centres = np.stack([size / 2 + size * 0.3 * np.sin(angles), size / 2 + size * 0.3 * np.cos(angles)], 1)
    palette = np.array([[0.1, 0.1, 0.1], [0.9, 0.1, 0.1], [0.1, 0.2, 0.9], [0.1, 0.8, 0.2],
                        [0.9, 0.9, 0.1], [0.6, 0.1, 0.8]], dtype=np.float32)
    for s in range(0, n, chunk):  # chunks bound the temporary memory
        lab = labels[s:s + chunk]
        m = len(lab)
        c = centres[lab] + rng.uniform(-2, 2, (m, 2))
        blob = np.exp(-((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) / (2 * 3.0**2))
        lesion = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * 5.0**2))
        R = (rng.uniform(0.6, 1.4, (m, 1, 1)) * blob + rng.uniform(0.3, 0.8, (m, 1, 1)) * lesion
             + 0.15 * rng.standard_normal((m, size, size)))
        img = 0.7 + 0.05 * rng.standard_normal((m, 3, size, size))
        img -= 0.4 * lesion[None, None]
        # a soft-edged coloured patch (smooth in its position, like the relevance blob)
        alpha = 0.9 * np.exp(-((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) / (2 * 2.5**2))
        img = img * (1 - alpha[:, None]) + palette[lab % len(palette)][:, :, None, None] * alpha[:, None]
        yield s, R.astype(np.float32), np.clip(img, 0, 1).astype(np.float32), lab


def planted(n: int, k: int = K, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relevance maps (n,size,size), images (n,3,size,size) in [0,1] and labels (n,) with k planted clusters."""
    R = np.empty((n, size, size), dtype=np.float32)
    X = np.empty((n, 3, size, size), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    for s, r, x, lab in planted_chunks(n, k, size, seed):
        R[s:s + len(lab)], X[s:s + len(lab)], y[s:s + len(lab)] = r, x, lab
    return R, X, y


def planted_h5(path: Path, n: int, k: int = K, size: int = 32, seed: int = 0) -> Path:
    """Write :func:`planted` chunk by chunk into an HDF5 file (never all maps in memory); reuse it if present.

    Layout as :func:`xaibias.explain.attribute_dataset` writes it: ``attribution`` float32 (N,1,H,W)
    and ``label``; the images go to ``images`` as uint8 (N,3,H,W) (a quarter of float32's bytes;
    xaibias scales uint8 by 1/255). HDF5 chunks hold 1,024 rows (``attribute_dataset`` stores one
    map per chunk, which costs more per read; see the README).
    """
    import h5py

    path = Path(path)
    if path.exists():
        with h5py.File(path, "r") as fh:
            if fh.attrs.get("complete", False) and len(fh["attribution"]) == n:
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as fh:
        A = fh.create_dataset("attribution", (n, 1, size, size), dtype=np.float32, chunks=(1024, 1, size, size))
        Im = fh.create_dataset("images", (n, 3, size, size), dtype=np.uint8, chunks=(1024, 3, size, size))
        L = fh.create_dataset("label", (n,), dtype=np.uint32)
        for s, r, x, lab in planted_chunks(n, k, size, seed):
            A[s:s + len(lab), 0] = r
            Im[s:s + len(lab)] = np.round(x * 255).astype(np.uint8)
            L[s:s + len(lab)] = lab
        fh.attrs["complete"] = True
    tmp.replace(path)
    return path


def features(R: np.ndarray) -> np.ndarray:
    """Flattened maps with unit L2 norm: SpRAy's preprocessing, given to both baselines."""
    F = R.reshape(len(R), -1).astype(np.float32)
    return F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)


def corelay_bytes(n: int) -> float:
    """Memory CoRelAy's default pipeline needs: condensed pdist (4 N^2 B) + square matrix + argsort (8 N^2 B each)."""
    return 20.0 * n * n


def fit(method: str, R: Any, X: Any) -> tuple[Any, np.ndarray, dict]:
    """Fit one method; returns (estimator or None, labels, extra)."""
    extra: dict = {}
    if method == "xaibias SpRAy":
        from xaibias.analysis import SpRAy

        est = SpRAy(n_clusters=K, random_state=0).fit(R)
        return est, est.labels_, extra
    if method == "xaibias GEBI":
        from xaibias.analysis import GEBI

        est = GEBI(n_clusters=K, random_state=0).fit(R, X)
        return est, est.labels_, extra
    if method == "CoRelAy SpectralClustering":
        from corelay.pipeline.spectral import SpectralClustering
        from corelay.processor.clustering import KMeans as CKMeans

        (eigval, eigvec), labels = SpectralClustering(clustering=CKMeans(n_clusters=K, is_output=True))(features(R))
        extra["leading_eigvecs"] = eigvec[:, np.argsort(eigval)[:K]]
        return None, np.asarray(labels), extra
    if method == "sklearn kNN + eigsh + k-means":
        import scipy.sparse as sp
        from scipy.sparse.linalg import eigsh
        from sklearn.cluster import KMeans
        from sklearn.neighbors import kneighbors_graph

        A = kneighbors_graph(features(R), n_neighbors=10, mode="connectivity", include_self=False)
        A = 0.5 * (A + A.T)
        d = np.asarray(A.sum(axis=1)).ravel() ** -0.5
        M = sp.diags(d) @ A @ sp.diags(d)
        vals, vecs = eigsh(M, k=32, which="LA", random_state=0) if _eigsh_has_rng() else eigsh(M, k=32, which="LA")
        lead = vecs[:, np.argsort(vals)[::-1][:K]]
        return None, KMeans(n_clusters=K, n_init=10, random_state=0).fit_predict(lead), extra
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


def _eigsh_has_rng() -> bool:
    import inspect

    from scipy.sparse.linalg import eigsh

    return "random_state" in inspect.signature(eigsh).parameters


def worker(method: str, n: int, seed: int, h5: str | None = None) -> dict:
    """One configuration, run inside its own process; returns the row.

    With ``h5`` the maps (and images) are read from that file by xaibias in chunks; the baselines
    load the maps into memory first (inside the measured part: they need them there).
    """
    import gc

    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    import xaibias  # noqa: F401 - import cost stays outside the timed and measured part

    fh = None
    if h5 is None:
        R, X, y = planted(n, seed=seed)
        if method == "xaibias SpRAy":
            X = X[:0]  # SpRAy does not use the images: free them before measuring
    else:
        import h5py

        fh = h5py.File(h5, "r")
        R, X, y = fh["attribution"], fh["images"], fh["label"][:].astype(np.int64)
    if method == "CoRelAy SpectralClustering":
        import corelay  # noqa: F401
    # one untimed warm-up fit on 300 other maps, for every method alike: first-call costs (BLAS and
    # OpenMP thread pools, threadpoolctl's library scan, lazy imports) are paid once per session, not per fit
    R_w, X_w, _ = planted(300, seed=seed + 99)
    fit(method, R_w, X_w[:0] if method == "xaibias SpRAy" else X_w)
    del R_w, X_w
    gc.collect()
    load = os.getloadavg()[0]
    rss0 = rss_mb()
    reset_peak_rss()
    c0 = time.process_time()
    t0 = time.perf_counter()
    if fh is not None and not method.startswith("xaibias"):
        R = R[:, 0]  # the baselines work in memory
    est, labels, extra = fit(method, R, X)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = peak_rss_mb()
    row = {"method": method, "n": n, "input": "memory" if h5 is None else "hdf5", "fit_s": seconds, "cpu_s": cpu,
           "peak_mb": peak, "extra_mb": None if peak is None or rss0 is None else peak - rss0,
           "ari": float(adjusted_rand_score(y, labels)), "load1": round(load, 2)}
    if est is not None and hasattr(est, "knn_recall_"):
        row["knn"] = est.knn_method_.split(" (")[0]
        row["knn_recall"] = round(float(est.knn_recall_), 4)
        row["landmarks"] = getattr(est, "n_landmarks_", None)
    if "leading_eigvecs" in extra:
        km = KMeans(n_clusters=K, n_init=10, random_state=0).fit_predict(extra["leading_eigvecs"])
        row["ari_4_eigvecs"] = float(adjusted_rand_score(y, km))
    if fh is not None:
        fh.close()
    return row


def run_config(method: str, n: int, seed: int, timeout: int, h5: Path | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, str(n), str(seed)]
    if h5 is not None:
        cmd.append(str(h5))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"method": method, "n": n, "note": f"stopped after {timeout} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        return {"method": method, "n": n, "note": "failed: " + (res.stderr.strip().splitlines() or ["?"])[-1][:160]}
    return json.loads(lines[-1])


def summarize(rows: list[dict], sizes: list[int]) -> dict:
    """Growth exponents and the issue's targets from the rows."""
    summary: dict = {}
    for method in METHODS:
        pts = [(r["n"], r["fit_s"]) for r in rows if r["method"] == method and "fit_s" in r]
        b = loglog_slope([p[0] for p in pts], [p[1] for p in pts])
        if b is not None:
            summary[f"{method}: growth exponent b (time ~ N^b)"] = round(b, 2)
        cpts = [(r["n"], r["cpu_s"]) for r in rows if r["method"] == method and "cpu_s" in r]
        bc = loglog_slope([p[0] for p in cpts], [p[1] for p in cpts])
        if bc is not None:
            summary[f"{method}: growth exponent of cpu s"] = round(bc, 2)
    big = max(sizes)
    for method in ("xaibias SpRAy", "xaibias GEBI"):
        r = next((q for q in rows if q["method"] == method and q["n"] == big and "fit_s" in q), None)
        if r is None:
            continue
        if 20000 <= big < 1_000_000:
            summary[f"{method} at N={big}: wall time under 6 s"] = bool(r["fit_s"] < 6)
            summary[f"{method} at N={big}: CPU time under 6 s"] = bool(r.get("cpu_s", 1e9) < 6)
            summary[f"{method} at N={big}: fit needs under 1 GB (extra MB)"] = bool(
                r.get("extra_mb") is not None and r["extra_mb"] < 1024)
            summary[f"{method} at N={big}: whole process under 1 GB (peak MB)"] = bool(
                r["peak_mb"] is not None and r["peak_mb"] < 1024)
        if big >= 1_000_000:
            wall, mem = (60, 4096) if method == "xaibias SpRAy" else (120, 6144)
            summary[f"{method} at N={big}: wall time under {wall} s (issue 19)"] = bool(r["fit_s"] < wall)
            summary[f"{method} at N={big}: whole process under {mem // 1024} GB (peak MB)"] = bool(
                r["peak_mb"] is not None and r["peak_mb"] < mem)
        summary[f"{method}: ARI >= 0.99 at every N"] = all(q["ari"] >= 0.99 for q in rows
                                                           if q["method"] == method and "ari" in q)
        for key, label in (("fit_s", "wall"), ("cpu_s", "CPU")):
            ahead = []
            for n in sizes:
                mine = next((q for q in rows if q["method"] == method and q["n"] == n and key in q), None)
                others = [q[key] for q in rows if q["n"] == n and key in q and not q["method"].startswith("xaibias")]
                if mine is not None and others:
                    ahead.append(mine[key] < min(others))
            summary[f"{method}: faster than every baseline at every N ({label} time)"] = bool(ahead) and all(ahead)
    return summary


def main(argv: list[str] | None = None) -> dict:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        h5 = sys.argv[5] if len(sys.argv) > 5 else None
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), h5)), flush=True)
        return {}
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="N values (default 1000 5000 20000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=None, choices=METHODS, metavar="METHOD",
                    help=f"subset of: {'; '.join(METHODS)}")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    ap.add_argument("--in-process", action="store_true",
                    help="run every configuration in this process (faster start; peak memory then less clean)")
    ap.add_argument("--input", choices=("auto", "memory", "hdf5"), default="auto",
                    help="where the maps come from: in memory, or an HDF5 file read in chunks (auto: memory up "
                         "to N=20,000, HDF5 above)")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "xaibias-bench",
                    help="folder of the generated HDF5 files (kept and reused: 7.2 GB at N=1,000,000)")
    ap.add_argument("--baseline-max-n", type=int, default=100_000,
                    help="largest N for the scikit-learn row (its exact search grows about as N^2)")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([200, 400] if args.quick else [1000, 5000, 20000])
    in_process = args.in_process or args.quick
    info = machine("cpu")
    notes: list[str] = []
    try:
        import corelay  # noqa: F401

        have_corelay = True
    except ImportError:
        have_corelay = False
        notes.append("CoRelAy rows skipped: corelay is not installed (pip install corelay)")
    rows: list[dict] = []
    for n in sizes:
        h5 = None
        if args.input == "hdf5" or (args.input == "auto" and n > 20000):
            h5 = args.data_dir / f"planted_n{n}_s{args.seed}.h5"
            t0 = time.perf_counter()
            planted_h5(h5, n, seed=args.seed)
            print(f"N={n:>7} data in {h5} ({time.perf_counter() - t0:.0f} s to write or check)", flush=True)
        for method in args.methods or METHODS:
            if method.startswith("sklearn") and n > args.baseline_max_n:
                rows.append({"method": method, "n": n, "note": f"skipped above N={args.baseline_max_n:,} (--baseline-max-n)"})
                continue
            if method.startswith("CoRelAy"):
                if not have_corelay:
                    continue
                need = corelay_bytes(n) / 1e9
                avail = mem_available_gb()
                if avail is not None and avail < need + 2:
                    notes.append(f"CoRelAy at N={n} skipped: it needs about {need:.1f} GB (N x N distances and "
                                 f"their argsort), {avail} GB available")
                    rows.append({"method": method, "n": n, "note": f"skipped: needs ~{need:.1f} GB"})
                    continue
            print(f"N={n:>6} {method} ...", end="", flush=True)
            row = (worker(method, n, args.seed, None if h5 is None else str(h5)) if in_process
                   else run_config(method, n, args.seed, args.timeout, h5))
            rows.append(row)
            print(f" {row.get('fit_s', float('nan')):.1f} s" if "fit_s" in row else f" {row.get('note')}", flush=True)
            if args.json is not None:  # partial results survive an interrupted run
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"benchmark": "bench_clustering", "partial": True, "rows": rows,
                                                 "machine": info}, indent=2, default=float))
    summary = summarize(rows, sizes)
    if in_process:
        notes.append("configurations ran in one process (--in-process/--quick): peak MB is that process's, "
                     "extra MB is still the growth during each fit")
    notes.append("peak_mb: the process's peak resident memory during the fit (interpreter, torch and the input "
                 "data included); extra_mb: that peak minus the resident memory just before the fit")
    notes.append("ari_4_eigvecs (CoRelAy): k-means on CoRelAy's 4 leading eigenvectors instead of all 32")
    notes.append("cpu s: CPU time of the fitting process (all its threads); on a loaded machine it inflates much "
                 "less than the wall time 'fit s'")
    notes.append("input hdf5: planted maps written chunk by chunk to --data-dir (attribution float32 (N,1,32,32), "
                 "images uint8), read by xaibias in chunks; the baselines load the maps into memory in the timed part")
    notes.append("knn: the neighbour search of xaibias's kNN graph (exact below 50,000 maps in the graph, faiss IVF "
                 "above); knn recall: share of the exact 10 nearest neighbours the graph holds, on 500 sampled maps; "
                 "landmarks: maps in the spectral step from N=50,000 on (the others assigned by their nearest "
                 "landmarks through faiss IVF; '-': every map in the graph); load1: 1-minute load average when the "
                 "configuration started")
    columns = [("n", "N"), ("method", "method"), ("input", "input"), ("fit_s", "fit s"), ("cpu_s", "cpu s"),
               ("peak_mb", "peak MB"), ("extra_mb", "extra MB"), ("ari", "ARI"), ("ari_4_eigvecs", "ARI (4 eigvecs)"),
               ("knn", "knn"), ("knn_recall", "knn recall"), ("landmarks", "landmarks"), ("load1", "load1"),
               ("note", "note")]
    return report("bench_clustering", args, info, rows, columns, summary, notes)


if __name__ == "__main__":
    main()
