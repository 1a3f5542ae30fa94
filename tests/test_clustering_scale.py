"""SpRAy and GEBI at scale: chunked (HDF5) input, approximate neighbours, mini-batch k-means.

The large-N paths are switched on with a lowered ``large_n`` instead of a million maps, so the
tests take seconds; benchmarks/bench_clustering.py measures the real sizes.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

import xaibias.analysis._chunked as chunked
from xaibias.analysis import GEBI, SpRAy
from xaibias.analysis._chunked import ChunkSource
from xaibias.analysis._neighbors import sampled_recall

_SPOTS = [(1, 1), (1, 9), (9, 1), (9, 9)]


def planted(n: int, k: int = 4, size: int = 16, seed: int = 0, noise: float = 0.6):
    """(N,1,size,size) maps with a bright 6x6 blob at one of k places, noise on top; images with a matching colour."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    R = torch.randn(n, 1, size, size, generator=g) * noise
    images = torch.rand(n, 3, size, size, generator=g) * 0.3 + 0.2
    for c in range(k):
        r, q = _SPOTS[c]
        R[y == c, 0, r : r + 6, q : q + 6] += 3.0
        images[y == c, c % 3] += 0.4
    return R, images, y.numpy()


def write_h5(path, R, images=None, chunks=True):
    """The attribute_dataset layout: ``attribution`` float32 (N,1,H,W), one map per HDF5 chunk."""
    with h5py.File(path, "w") as fh:
        fh.create_dataset("attribution", data=R.numpy(), chunks=(1, *R.shape[1:]) if chunks else None)
        if images is not None:
            fh.create_dataset("images", data=images.numpy())
    return path


@pytest.fixture
def small_chunks(monkeypatch):
    # 16x16 float32 maps are 1 KB: 100 KB chunks hold 100 maps, so N=600 is read in 6 chunks
    monkeypatch.setattr(chunked, "CHUNK_BYTES", 100 * 1024)
    monkeypatch.setattr(chunked, "_MIN_CHUNK_ROWS", 1)


def test_chunked_h5_input_gives_the_in_memory_labels(tmp_path, small_chunks):
    R, images, y = planted(600)
    path = write_h5(tmp_path / "relevance.h5", R, images)
    mem = SpRAy(n_clusters=4, random_state=0).fit(R)
    with h5py.File(path, "r") as fh:
        assert ChunkSource(fh["attribution"], "relevance", "relevance").chunk_rows == 100
        ext = SpRAy(n_clusters=4, random_state=0).fit(fh["attribution"])
        np.testing.assert_array_equal(ext.labels_, mem.labels_)
        np.testing.assert_allclose(ext.features_, mem.features_, atol=1e-5)
        np.testing.assert_allclose(ext.eigenvalues_, mem.eigenvalues_, atol=1e-6)
        # predict on chunked input: the fitted maps get their own labels back
        np.testing.assert_array_equal(ext.predict(fh["attribution"]), mem.predict(R))
        gm = GEBI(n_clusters=4, random_state=0).fit(R, images)
        ge = GEBI(n_clusters=4, random_state=0).fit(fh["attribution"], fh["images"])
        np.testing.assert_array_equal(ge.labels_, gm.labels_)
    assert adjusted_rand_score(y, mem.labels_) == pytest.approx(1.0)


def test_chunked_input_above_the_pca_sample_size_matches_in_memory(tmp_path, small_chunks):
    # N > 5,000: the PCA basis comes from a sample, read row-range by row-range from the file
    R, _, y = planted(5200, size=12, noise=0.5)
    mem = SpRAy(n_clusters=4, relevance_components=10, random_state=0).fit(R)
    # a numpy memmap is read in chunks too (100 KB chunks: 180 maps of 12 x 12)
    mm = np.lib.format.open_memmap(tmp_path / "r.npy", mode="w+", dtype=np.float32, shape=tuple(R.shape))
    mm[:] = R.numpy()
    ext = SpRAy(n_clusters=4, relevance_components=10, random_state=0).fit(mm)
    np.testing.assert_array_equal(ext.labels_, mem.labels_)
    np.testing.assert_allclose(ext.features_, mem.features_, atol=1e-5)
    assert adjusted_rand_score(y, ext.labels_) == pytest.approx(1.0)


def smooth_planted(n: int, k: int = 4, size: int = 16, seed: int = 0):
    """Maps of one Gaussian blob at one of k places, jittered by up to 2 pixels, with weak noise.

    Like benchmarks/bench_clustering.py's data, the maps vary along few directions (blob position
    and strength), which is where approximate search finds most true neighbours.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    spots = np.array([[4, 4], [4, 11], [11, 4], [11, 11]], dtype=np.float32)
    c = spots[y] + rng.uniform(-2, 2, (n, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    R = np.exp(-((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) / 8.0)
    R = R * rng.uniform(0.6, 1.4, (n, 1, 1)) + 0.05 * rng.standard_normal((n, size, size))
    return torch.from_numpy(R.astype(np.float32)), y


def test_large_n_path_uses_approximate_neighbours_with_measured_recall():
    R, y = smooth_planted(3000)
    exact = SpRAy(n_clusters=4, random_state=0).fit(R)  # 3,000 < large_n: exact search, full k-means
    assert exact.knn_method_ == "exact" and exact.knn_recall_ == 1.0
    approx = SpRAy(n_clusters=4, random_state=0, large_n=1000).fit(R)
    assert approx.knn_method_.startswith("faiss IVF")
    # recall of the approximate graph against an independent exact search on the same features
    k = approx.n_neighbors
    X = approx.features_
    _, truth = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    A = approx.affinity_.tolil()
    directed = np.mean([len(set(truth[i][truth[i] != i][:k]) & set(A.rows[i])) / k for i in range(len(X))])
    assert approx.knn_recall_ >= 0.9  # the stated bound on these maps (4 of 55 cells probed)
    assert directed >= approx.knn_recall_ - 0.05  # the symmetric graph holds at least the directed edges
    # same clusters, found by mini-batch k-means; eigengap and predict keep working
    assert adjusted_rand_score(y, approx.labels_) == pytest.approx(1.0)
    assert adjusted_rand_score(exact.labels_, approx.labels_) == pytest.approx(1.0)
    # four components, then a jump (over 2..20 a later, larger gap between sub-shapes wins on these maps)
    assert approx.suggest_n_clusters(max_clusters=8) == exact.suggest_n_clusters(max_clusters=8) == 4
    np.testing.assert_allclose(approx.eigenvalues_[:8], exact.eigenvalues_[:8], atol=1e-3)
    np.testing.assert_array_equal(approx.predict(R[:500]), approx.labels_[:500])
    # forcing either search overrides the size rule
    assert SpRAy(n_clusters=4, neighbors="exact", large_n=1000).fit(R[:1200]).knn_method_ == "exact"
    assert SpRAy(n_clusters=4, neighbors="approx").fit(R[:1200]).knn_method_.startswith("faiss")


def test_sampled_recall_counts_shared_neighbours():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 5)).astype(np.float32)
    _, truth = NearestNeighbors(n_neighbors=4).fit(X).kneighbors(X)
    graph = truth[:, 1:]
    assert sampled_recall(X, graph, 3, n_sample=400) == pytest.approx(1.0)
    # replace one of three neighbours by a far point in every row: recall 2/3
    broken = graph.copy()
    broken[:, 2] = np.argmax(((X[:, None] - X[None]) ** 2).sum(-1), axis=1)
    assert sampled_recall(X, broken, 3, n_sample=400) == pytest.approx(2 / 3)


def test_chunked_bad_input_names_the_chunk(tmp_path, small_chunks):
    R, images, _ = planted(600)
    R[250, 0, 3, 3] = float("nan")
    path = write_h5(tmp_path / "nan.h5", R, images)
    with h5py.File(path, "r") as fh:
        with pytest.raises(ValueError, match=r"relevance: chunk 2 \(rows 200-299; item i there is row 200 \+ i\).*NaN.*\[50\] of 100"):
            SpRAy(n_clusters=4).fit(fh["attribution"])
    R, images, _ = planted(600)
    R[437] = 0.0
    path = write_h5(tmp_path / "zero.h5", R)
    with h5py.File(path, "r") as fh:
        with pytest.raises(ValueError, match=r"all-zero map\(s\) at index \[437\]"):
            SpRAy(n_clusters=4).fit(fh["attribution"])
    with h5py.File(tmp_path / "bad.h5", "w") as fh:
        fh.create_dataset("flat", data=np.ones((10, 256), np.float32))
        fh.create_dataset("gray", data=np.ones((10, 2, 8, 8), np.float32))
        with pytest.raises(ValueError, match=r"relevance must be \(N,H,W\) or \(N,C,H,W\) maps; got Dataset of shape \(10, 256\)"):
            SpRAy(n_clusters=2).fit(fh["flat"])
        with pytest.raises(ValueError, match=r"images must be \(N,3,H,W\) images; got Dataset of shape \(10, 2, 8, 8\)"):
            GEBI(n_clusters=2).fit(R[:10], fh["gray"])
        with pytest.raises(ValueError, match="mismatched N"):
            GEBI(n_clusters=2).fit(R[:9], fh["gray"][:, :1])
    with pytest.raises(ValueError, match="neighbors must be one of"):
        SpRAy(neighbors="faiss").fit(R)
    with pytest.raises(ValueError, match="large_n must be a positive int"):
        SpRAy(large_n=0).fit(R)


def test_approximate_search_fills_rows_whose_probed_cells_hold_too_few_maps():
    # 80 maps in 16 cells, 4 probed: some queries see fewer than 11 maps and are searched exactly
    from xaibias.analysis._neighbors import KNN

    R, y = smooth_planted(80)
    X = SpRAy(n_clusters=4).fit(R).features_
    knn = KNN("approx").fit(X, 11)
    assert knn.nlist_ == 16
    dist, ind = knn.kneighbors(X, 11)
    assert (ind >= 0).all() and np.isfinite(dist).all()
    _, truth = NearestNeighbors(n_neighbors=11).fit(X).kneighbors(X)
    approx = SpRAy(n_clusters=4, neighbors="approx").fit(R)
    assert (np.diff(approx.affinity_.indptr) >= approx.n_neighbors).all()
    assert adjusted_rand_score(y, approx.labels_) == pytest.approx(1.0)
    # where the probed cells held enough maps, the distances are exact: the nearest one is the map itself
    np.testing.assert_array_equal(ind[:, 0], np.arange(len(X)))
    assert np.mean([len(set(a) & set(b)) for a, b in zip(ind, truth)]) / 11 > 0.5


# ---------------------------------------------------------------------------- landmark path (issue 19)


def _vote_by_hand(dist, ind, labels, k):
    """predict's rule written out: each row's neighbours vote for their label with weight 1 / distance."""
    votes = np.zeros((len(ind), k))
    for i in range(len(ind)):
        for d, j in zip(dist[i], ind[i]):
            votes[i, labels[j]] += 1.0 / max(d, 1e-9)
    return votes.argmax(axis=1)


def test_landmark_path_agrees_with_the_full_spectral_clustering():
    R, y = smooth_planted(3000)
    full = SpRAy(n_clusters=4, random_state=0, large_n=1000, landmarks=None, neighbors="exact").fit(R)
    lm = SpRAy(n_clusters=4, random_state=0, large_n=1000, landmarks=600, neighbors="exact").fit(R)
    assert full.landmark_indices_ is None and full.n_landmarks_ is None and full.embedding_.shape[0] == 3000
    L = lm.landmark_indices_
    assert lm.n_landmarks_ == 600 and len(np.unique(L)) == 600 and np.all(np.diff(L) > 0) and L[-1] < 3000
    assert lm.labels_.shape == (3000,) and lm.features_.shape[0] == 3000
    assert lm.embedding_.shape == (600, 32) and lm.affinity_.shape == (600, 600) and lm.embedding_2d_.shape == (600, 2)
    assert adjusted_rand_score(full.labels_, lm.labels_) >= 0.99
    assert adjusted_rand_score(y, lm.labels_) >= 0.99
    # the eigenvalues are those of the landmark graph: the symmetric 10-NN graph of the landmarks'
    # features, built here with scikit-learn and solved densely
    XL = lm.features_[L]
    A = kneighbors_graph(XL, n_neighbors=lm.n_neighbors, include_self=False)
    A = A.maximum(A.T).toarray()
    d = 1.0 / np.sqrt(A.sum(axis=1))
    lap = np.eye(600) - d[:, None] * A * d[None, :]
    np.testing.assert_allclose(lm.eigenvalues_, np.linalg.eigvalsh(lap)[:32], atol=1e-4)
    assert lm.suggest_n_clusters(max_clusters=8) == 4
    # every other map: the vote of its n_neighbors nearest landmarks, by an independent exact search
    rest = np.setdiff1d(np.arange(3000), L)
    dist, ind = NearestNeighbors(n_neighbors=lm.n_neighbors).fit(XL).kneighbors(lm.features_[rest])
    np.testing.assert_array_equal(lm.labels_[rest], _vote_by_hand(dist, ind, lm.labels_[L], 4))
    np.testing.assert_array_equal(lm.predict(R[torch.from_numpy(rest)]), lm.labels_[rest])
    assert lm.landmark_knn_method_ == "exact" and lm.knn_method_ == "exact"
    # other k: landmark k-means, then the same vote; the fitted k gives labels_ back
    np.testing.assert_array_equal(lm.labels_for(4), lm.labels_)
    assert lm.labels_for(3).shape == (3000,) and set(np.unique(lm.labels_for(3))) == {0, 1, 2}


def test_landmark_path_with_approximate_assignment_and_chunked_input(tmp_path, small_chunks, monkeypatch):
    import xaibias.analysis.spray as spray

    R, y = smooth_planted(2400, seed=3)
    monkeypatch.setattr(spray, "LANDMARKS_AUTO", 500)  # "auto" at a size the test can afford
    lm = SpRAy(n_clusters=4, random_state=0, large_n=1000).fit(R)
    assert lm.n_landmarks_ == 500 and lm.landmark_knn_method_.startswith("faiss IVF")
    assert lm.knn_method_ == "exact"  # 500 landmarks < large_n: the landmark graph is searched exactly
    assert adjusted_rand_score(y, lm.labels_) >= 0.99
    rest = np.setdiff1d(np.arange(2400), lm.landmark_indices_)
    np.testing.assert_array_equal(lm.predict(R[torch.from_numpy(rest)]), lm.labels_[rest])
    # below large_n, or with at least as many landmarks as maps, the full path runs
    assert SpRAy(n_clusters=4, large_n=3000).fit(R).landmark_indices_ is None
    assert SpRAy(n_clusters=4, large_n=1000, landmarks=2400).fit(R).landmark_indices_ is None
    # HDF5 input read in chunks: the same landmarks and labels as in memory
    path = write_h5(tmp_path / "relevance.h5", R[:, None])
    with h5py.File(path, "r") as fh:
        ext = SpRAy(n_clusters=4, random_state=0, large_n=1000).fit(fh["attribution"])
    np.testing.assert_array_equal(ext.landmark_indices_, lm.landmark_indices_)
    np.testing.assert_array_equal(ext.labels_, lm.labels_)


def test_gebi_landmark_path():
    R, images, y = planted(2000, noise=0.3)
    g = GEBI(n_clusters=4, random_state=0, large_n=1000, landmarks=700).fit(R, images)
    assert g.n_landmarks_ == 700 and g.labels_.shape == (2000,) and g.embedding_.shape[0] == 700
    assert adjusted_rand_score(y, g.labels_) >= 0.99
    rest = np.setdiff1d(np.arange(2000), g.landmark_indices_)[:300]
    idx = torch.from_numpy(rest)
    np.testing.assert_array_equal(g.predict(R[idx], images[idx]), g.labels_[rest])


@pytest.mark.parametrize("bad", ["many", "AUTO", True, 1, 0, -5, 2.5, [100]])
def test_bad_landmarks_values_are_rejected(bad):
    R, _ = smooth_planted(60)
    with pytest.raises(ValueError, match=r"landmarks must be None \(off\), 'auto' or an int >= 2"):
        SpRAy(n_clusters=2, n_neighbors=5, landmarks=bad).fit(R)


def test_too_few_landmarks_for_the_graph_are_rejected():
    R, _ = smooth_planted(300)
    with pytest.raises(ValueError, match="gives 8 landmark maps; they must be more than n_neighbors=10"):
        SpRAy(n_clusters=4, large_n=100, landmarks=8).fit(R)
    with pytest.raises(ValueError, match="at least n_clusters=12"):
        SpRAy(n_clusters=12, n_neighbors=5, large_n=100, landmarks=11).fit(R)


@pytest.mark.parametrize("channels", [3, 1])
def test_uint8_image_chunks_equal_as_images(channels):
    from xaibias._checks import as_images

    u8 = np.random.default_rng(0).integers(0, 256, (20, channels, 5, 6), dtype=np.uint8)
    u8[0] = 255
    u8[1] = 0
    src = ChunkSource(u8, "images", "images", chunk_rows=7)
    parts = [t for _, _, t in src.chunks()]
    assert [len(t) for t in parts] == [7, 7, 6]
    got = torch.cat(parts)
    assert got.dtype == torch.float32 and got.shape == (20, 3, 5, 6)
    assert torch.equal(got, as_images(u8))  # the checked path, value for value
    assert float(got[0].min()) == 1.0 and float(got[1].max()) == 0.0
    assert torch.equal(src.rows(np.array([2, 5, 19])), as_images(u8[[2, 5, 19]]))
