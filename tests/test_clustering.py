"""SpRAy and GEBI on constructed inputs with a known cluster structure."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import adjusted_rand_score

from xaibias.analysis import GEBI, SpRAy
from xaibias.analysis.spray import eigengap

# Quadrant-like blob positions for up to 6 planted "strategies" in a 32x32 map.
_SPOTS = [(2, 2), (2, 20), (20, 2), (20, 20), (11, 11), (2, 11)]


def planted_maps(n: int, k: int, seed: int = 0, noise: float = 0.5, size: int = 32):
    """Maps with a bright 10x10 blob at one of k places (the planted cluster) plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    R = torch.randn(n, size, size, generator=g) * noise
    for c in range(k):
        r, q = _SPOTS[c]
        R[y == c, r : r + 10, q : q + 10] += 3.0
    return R, y.numpy()


def image_only_structure(n: int = 300, k: int = 3, seed: int = 1):
    """Pure-noise relevance; the clusters are only in the image colour (one channel brighter)."""
    g = torch.Generator().manual_seed(seed)
    y = np.arange(n) % k
    images = torch.rand(n, 3, 24, 24, generator=g) * 0.2 + 0.4
    for c in range(k):
        images[torch.as_tensor(y == c), c] += 0.3
    R = torch.randn(n, 24, 24, generator=g)
    return R, images, y


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_spray_recovers_planted_clusters_and_eigengap_finds_k(k):
    R, y = planted_maps(60 * k, k, seed=k)
    sp_ = SpRAy(n_clusters=k, random_state=0).fit(R)
    assert adjusted_rand_score(y, sp_.labels_) == pytest.approx(1.0)
    assert sp_.suggest_n_clusters() == k
    auto = SpRAy(n_clusters="auto", random_state=0).fit(R)
    assert auto.n_clusters_ == k
    # eigenvalues: ascending, k of them near 0 (k disconnected groups), then a jump
    ev = sp_.eigenvalues_
    assert np.all(np.diff(ev) >= -1e-9)
    assert ev[k - 1] < 0.05 < ev[k]


def test_sparse_eigensolver_path_large_n():
    # N > 1000 takes the ARPACK path; the affinity stays sparse with at most 2*N*k entries
    R, y = planted_maps(1500, 4, seed=3)
    est = SpRAy(n_clusters=4, n_neighbors=8, random_state=0).fit(R)
    assert sp.issparse(est.affinity_)
    assert est.affinity_.nnz <= 2 * 1500 * 8
    assert (est.affinity_ != est.affinity_.T).nnz == 0
    assert adjusted_rand_score(y, est.labels_) == pytest.approx(1.0)
    assert est.suggest_n_clusters() == 4


def test_eigengap_function_on_hand_made_spectrum():
    assert eigengap(np.array([0.0, 0.0, 0.01, 0.6, 0.62, 0.7])) == 3
    # one connected group: the largest gap is right after the first eigenvalue
    assert eigengap(np.array([0.0, 0.3, 0.35, 0.4]), min_clusters=1) == 1
    assert eigengap(np.array([0.0, 0.05, 0.3, 0.32, 0.9])) == 4
    assert eigengap(np.array([0.0, 0.05, 0.3, 0.32, 0.9]), max_clusters=3) == 2
    with pytest.raises(ValueError, match="max_clusters"):
        eigengap(np.array([0.0, 0.1, 0.2]), min_clusters=2, max_clusters=5)


def test_gebi_sees_image_structure_that_spray_cannot():
    R, images, y = image_only_structure()
    spray = SpRAy(n_clusters=3, random_state=0).fit(R)
    gebi = GEBI(n_clusters=3, image_weight=1.0, random_state=0).fit(R, images)
    assert adjusted_rand_score(y, spray.labels_) < 0.1
    assert adjusted_rand_score(y, gebi.labels_) > 0.95
    # with the image switched off GEBI is blind again
    blind = GEBI(n_clusters=3, image_weight=0.0, random_state=0).fit(R, images)
    assert adjusted_rand_score(y, blind.labels_) < 0.1


def test_gebi_with_zero_image_weight_equals_spray_on_same_reduction():
    R, y = planted_maps(200, 4, seed=5)
    images = torch.rand(200, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    spray = SpRAy(n_clusters=4, relevance_components=20, random_state=0).fit(R)
    gebi = GEBI(n_clusters=4, image_weight=0.0, relevance_components=20, random_state=0).fit(R, images)
    np.testing.assert_array_equal(spray.labels_, gebi.labels_)


def test_feature_slices_say_where_each_part_lies():
    R, images, _ = image_only_structure(n=200)
    gebi = GEBI(n_clusters=3, relevance_components=10, image_components=6, random_state=0).fit(R, images)
    assert gebi.feature_slices_ == {"relevance": slice(0, 10), "images": slice(10, 16)}
    spray = SpRAy(n_clusters=3, relevance_components=10, random_state=0).fit(R)
    assert spray.feature_slices_ == {"relevance": slice(0, 10)}
    # fewer maps than components: no PCA, each part keeps its own width, which the total does not tell
    small = GEBI(n_clusters=2, n_neighbors=3, random_state=0).fit(R[:12], images[:12])
    rel, img = small.feature_slices_["relevance"], small.feature_slices_["images"]
    assert rel.start == 0 and rel.stop == img.start and img.stop == small.features_.shape[1]
    assert rel.stop == small.relevance_size ** 2 != small.features_.shape[1] // 2


def test_gebi_weights_set_variance_share_of_each_part():
    R, images, _ = image_only_structure(n=200)
    gebi = GEBI(n_clusters=3, image_weight=2.0, relevance_weight=1.0, relevance_components=10,
                image_components=6, random_state=0).fit(R, images)
    X = gebi.features_.astype(np.float64)
    assert X.shape == (200, 16)
    assert X[:, :10].var(axis=0).sum() == pytest.approx(1.0, rel=1e-3)
    assert X[:, 10:].var(axis=0).sum() == pytest.approx(4.0, rel=1e-3)


def test_predict_assigns_new_maps_to_their_planted_cluster():
    R, y = planted_maps(240, 4, seed=7)
    est = SpRAy(n_clusters=4, random_state=0).fit(R)
    np.testing.assert_array_equal(est.predict(R), est.labels_)
    R_new, y_new = planted_maps(80, 4, seed=99)
    pred = est.predict(R_new)
    # map each planted class to the cluster the fit gave it; new maps must land there
    to_cluster = {c: np.bincount(est.labels_[y == c]).argmax() for c in range(4)}
    np.testing.assert_array_equal(pred, [to_cluster[c] for c in y_new])


def test_gebi_predict_uses_images_too():
    R, images, y = image_only_structure(n=300, seed=2)
    gebi = GEBI(n_clusters=3, random_state=0).fit(R, images)
    R2, images2, y2 = image_only_structure(n=60, seed=3)
    assert adjusted_rand_score(y2, gebi.predict(R2, images2)) > 0.95
    with pytest.raises(ValueError, match="GEBI needs the input images"):
        gebi.predict(R2)


def test_deterministic_and_labels_sorted_by_size():
    R, _ = planted_maps(150, 3, seed=11)
    R = torch.cat([R, planted_maps(60, 1, seed=12)[0]])  # cluster sizes 110, 50, 50
    a = SpRAy(n_clusters=3, random_state=4).fit(R)
    b = SpRAy(n_clusters=3, random_state=4).fit(R.clone())
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.eigenvalues_, b.eigenvalues_)
    sizes = np.bincount(a.labels_)
    assert list(sizes) == sorted(sizes, reverse=True)


def test_labels_for_other_k_and_2d_embeddings():
    R, y = planted_maps(200, 4, seed=13)
    est = SpRAy(n_clusters=4, random_state=0).fit(R)
    assert len(np.unique(est.labels_for(2))) == 2
    np.testing.assert_array_equal(est.labels_for(4), est.labels_)
    assert est.embedding_.shape == (200, 32)
    assert est.embedding_2d_.shape == (200, 2)
    tsne = SpRAy(n_clusters=4, embedding_2d="tsne", random_state=0).fit(R)
    assert tsne.embedding_2d_.shape == (200, 2) and np.isfinite(tsne.embedding_2d_).all()
    with pytest.raises(ValueError, match="k must be an int in"):
        est.labels_for(40)


def test_accepts_channel_maps_numpy_and_absolute():
    R, y = planted_maps(120, 3, seed=14)
    R4 = np.repeat(R.numpy()[:, None] / 3.0, 3, axis=1)  # (N,3,H,W) numpy, summed over C
    est = SpRAy(n_clusters=3, absolute=True, normalize="max", random_state=0).fit(R4)
    assert adjusted_rand_score(y, est.labels_) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- bad inputs
def test_mismatched_n_is_a_clear_error():
    R, images, _ = image_only_structure(n=60)
    with pytest.raises(ValueError, match=r"mismatched N: relevance has N=60, images has N=59"):
        GEBI(n_clusters=3).fit(R, images[:59])
    with pytest.raises(ValueError, match=r"mismatched N"):
        SpRAy(n_clusters=3).fit(R, images[:50])


def test_nan_maps_are_a_clear_error():
    R, _ = planted_maps(40, 2)
    R[7, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"relevance contains NaN or infinite values \(in item\(s\) \[7\]"):
        SpRAy(n_clusters=2).fit(R)


def test_more_clusters_than_maps_is_a_clear_error():
    R, _ = planted_maps(8, 2)
    with pytest.raises(ValueError, match=r"n_clusters=9 is larger than the number of maps N=8"):
        SpRAy(n_clusters=9, n_neighbors=3).fit(R)
    with pytest.raises(ValueError, match=r"n_neighbors=10 must be smaller than the number of maps N=8"):
        SpRAy(n_clusters=2).fit(R)


def test_other_bad_inputs():
    R, images, _ = image_only_structure(n=40)
    with pytest.raises(ValueError, match="GEBI needs the input images"):
        GEBI(n_clusters=2).fit(R)
    R0 = R.clone()
    R0[5] = 0
    with pytest.raises(ValueError, match=r"all-zero map\(s\) at index \[5\]"):
        SpRAy(n_clusters=2).fit(R0)
    with pytest.raises(ValueError, match="normalize must be one of"):
        SpRAy(n_clusters=2, normalize="minmax").fit(R)
    with pytest.raises(ValueError, match="image_weight must be a finite number >= 0"):
        GEBI(n_clusters=2, image_weight=-1.0).fit(R, images)
    with pytest.raises(ValueError, match="n_clusters must be a positive int or 'auto'"):
        SpRAy(n_clusters=0).fit(R)
    with pytest.raises(ValueError, match=r"images must have values in \[0,1\]"):
        GEBI(n_clusters=2).fit(R, images * 3)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        SpRAy(n_clusters=2).predict(R)


@pytest.mark.parametrize("noise", [0.5, 2.5])
def test_arpack_above_200_maps_gives_the_dense_solvers_spectrum_and_labels(monkeypatch, noise):
    """From 201 maps on ARPACK replaced the dense solver (issue 19: 3x faster at N = 1,000)."""
    import xaibias.analysis.spray as spray

    R, y = planted_maps(600, 5, seed=2, noise=noise)
    arpack = SpRAy(n_clusters=5, random_state=0).fit(R)
    monkeypatch.setattr(spray, "_DENSE_EIG_MAX_N", 1000)
    dense = SpRAy(n_clusters=5, random_state=0).fit(R)
    np.testing.assert_allclose(arpack.eigenvalues_, dense.eigenvalues_, atol=1e-5)
    # eigenvectors agree up to a rotation inside (near-)repeated eigenvalues: compare the subspaces
    # of the first 5, which k-means sees (singular values of U_a^T U_d all 1)
    s = np.linalg.svd(arpack.embedding_[:, :5].T.astype(np.float64) @ dense.embedding_[:, :5])[1]
    np.testing.assert_allclose(s, 1.0, atol=1e-4)
    np.testing.assert_array_equal(arpack.labels_, dense.labels_)
    for k in (5, 6, 8):  # k at least the number of planted groups: the same partition
        np.testing.assert_array_equal(arpack.labels_for(k), dense.labels_for(k))


def test_small_fits_run_blas_on_one_thread(monkeypatch):
    # the PCA and k-means of a few thousand maps are too small to share between threads (measured:
    # one thread 1.3-8x faster on 2 cores); larger fits keep the caller's thread settings
    from threadpoolctl import threadpool_info

    import xaibias.analysis.spray as spray_mod

    seen = []
    inner = spray_mod.SpectralBase._fit_inputs

    def spy(self, inputs, n):
        seen.append(max(p["num_threads"] for p in threadpool_info()))
        return inner(self, inputs, n)

    monkeypatch.setattr(spray_mod.SpectralBase, "_fit_inputs", spy)
    R = torch.rand(300, 8, 8, generator=torch.Generator().manual_seed(0))
    spray_mod.SpRAy(n_clusters=2, n_neighbors=5).fit(R)
    monkeypatch.setattr(spray_mod, "_ONE_THREAD_MAX_N", 100)
    spray_mod.SpRAy(n_clusters=2, n_neighbors=5).fit(R)
    assert seen[0] == 1
    assert seen[1] == max(p["num_threads"] for p in threadpool_info())
