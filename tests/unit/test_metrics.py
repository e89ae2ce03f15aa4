"""Revisitop metrics: hand-worked cases, a transcription of revisitop's loop, orientation, and the published example."""

import urllib.request

import numpy as np
import pytest

from retrieval.data.gnd import load_ground_truth
from retrieval.evaluation.metrics import average_precision, evaluate_rankings, protocol_labels, query_metrics


def revisitop_reference(ranks_db_by_q, gnd_ok, gnd_junk, kappas):
    """revisitop's compute_map, transcribed loop by loop (ranks are (n_db, n_q) there)."""
    nq = ranks_db_by_q.shape[1]
    aps, prs, nempty = [], [], 0
    for i in range(nq):
        ok = np.array(gnd_ok[i])
        if len(ok) == 0:
            nempty += 1
            continue
        pos = np.arange(ranks_db_by_q.shape[0])[np.isin(ranks_db_by_q[:, i], ok)]
        junk = np.arange(ranks_db_by_q.shape[0])[np.isin(ranks_db_by_q[:, i], np.array(gnd_junk[i]))]
        k, ij = 0, 0
        if len(junk):
            ip = 0
            while ip < len(pos):
                while ij < len(junk) and pos[ip] > junk[ij]:
                    k += 1
                    ij += 1
                pos[ip] = pos[ip] - k
                ip += 1
        ap, recall_step = 0.0, 1.0 / len(ok)
        for j, r in enumerate(pos):
            p0 = 1.0 if r == 0 else j / r
            p1 = (j + 1) / (r + 1)
            ap += (p0 + p1) * recall_step / 2.0
        aps.append(ap)
        pos = pos + 1
        prs.append([np.sum(pos <= min(max(pos), kk)) / min(max(pos), kk) for kk in kappas])
    return np.mean(aps), np.mean(prs, axis=0)


def test_ap_hand_worked():
    # positives at ranks 0 and 2 of 2: 0.5*(1+1)/2 + 0.5*(1/2+2/3)/2
    assert average_precision(np.array([0, 2]), 2) == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    # a positive never retrieved contributes nothing, but still counts in the denominator
    assert average_precision(np.array([0]), 2) == pytest.approx(0.5)


def test_junk_is_removed_before_ap():
    ranking = np.array([3, 7, 5, 1, 0])  # 3 positive, 7 junk, 5 positive
    ap, prec = query_metrics(ranking, np.array([3, 5]), np.array([7]), n_db=8, ks=(1, 5))
    assert ap == pytest.approx(1.0)  # with junk gone the positives are at ranks 0 and 1
    without_junk_removed, _ = query_metrics(ranking, np.array([3, 5]), np.array([], int), n_db=8, ks=(1,))
    assert without_junk_removed < 1.0


def test_modified_precision_denominator():
    ranking = np.array([2, 0, 1, 3, 4, 5, 6, 7, 8, 9])
    _, prec = query_metrics(ranking, np.array([2, 1]), np.array([], int), n_db=10, ks=(1, 5, 10))
    # last positive at rank 3 (1-based): P@5 and P@10 divide by 3, not by 5 or 10
    assert prec == pytest.approx([1.0, 2 / 3, 2 / 3])


def test_protocols_and_empty_queries_excluded():
    gnd = [
        {"easy": [0], "hard": [1], "junk": [2]},
        {"easy": [3], "hard": [], "junk": []},  # no hard positive: excluded from H
    ]
    ranks = np.array([[1, 2, 0, 3, 4], [3, 0, 1, 2, 4]])
    out = evaluate_rankings(ranks, gnd, n_db=5)
    assert out["n_evaluated"] == {"E": 2, "M": 2, "H": 1}
    assert out["per_query_ap"]["H"][1] is None
    # E for query 0: hard (1) and junk (2) ignored, easy (0) becomes rank 0 -> AP 1
    assert out["per_query_ap"]["E"][0] == pytest.approx(1.0)
    # H for query 0: easy (0) and junk ignored, hard (1) at rank 0 -> AP 1; mean over 1 query
    assert out["mAP"]["H"] == pytest.approx(100.0)
    ok, junk = protocol_labels(gnd[0], "M")
    assert sorted(ok) == [0, 1] and list(junk) == [2]


def test_matches_revisitop_transcription_on_random_rankings():
    rng = np.random.default_rng(1)
    n_db, n_q = 60, 12
    gnd = []
    for _ in range(n_q):
        labels = rng.choice(4, size=n_db, p=[0.8, 0.08, 0.07, 0.05])  # negative, easy, hard, junk
        gnd.append(
            {
                "easy": np.flatnonzero(labels == 1).tolist(),
                "hard": np.flatnonzero(labels == 2).tolist(),
                "junk": np.flatnonzero(labels == 3).tolist(),
            }
        )
    ranks = np.stack([rng.permutation(n_db) for _ in range(n_q)])
    out = evaluate_rankings(ranks, gnd, n_db, ks=(1, 5, 10))
    for p in "EMH":
        ok, junk = zip(*(protocol_labels(g, p) for g in gnd))
        ref_map, ref_pr = revisitop_reference(ranks.T.copy(), ok, junk, (1, 5, 10))
        assert out["mAP"][p] == pytest.approx(100 * ref_map, abs=1e-3)
        assert [out[f"mP@{k}"][p] for k in (1, 5, 10)] == pytest.approx(100 * ref_pr, abs=1e-3)


def test_orientation_is_checked():
    gnd = [{"easy": [0], "hard": [], "junk": []} for _ in range(3)]
    ranks = np.tile(np.arange(10), (3, 1))
    evaluate_rankings(ranks, gnd, n_db=10)  # (n_queries, n_db): fine
    with pytest.raises(ValueError, match="transposed"):
        evaluate_rankings(ranks.T, gnd, n_db=10)


def _online(url: str) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
        return True
    except OSError:
        return False


REVISITOP = "http://cmp.felk.cvut.cz/revisitop/data"


@pytest.mark.online
def test_published_roxford_gem_example(tmp_path):
    """revisitop's example: ROxford5k R-GeM features give mAP E/M/H 84.81/64.67/38.47."""
    if not _online(f"{REVISITOP}/datasets/roxford5k/gnd_roxford5k.pkl"):
        pytest.skip("offline: the revisitop example features and ground truth cannot be downloaded here")
    import scipy.io  # noqa: PLC0415

    gnd_path, feat_path = tmp_path / "gnd_roxford5k.pkl", tmp_path / "feats.mat"
    urllib.request.urlretrieve(f"{REVISITOP}/datasets/roxford5k/gnd_roxford5k.pkl", gnd_path)
    urllib.request.urlretrieve(f"{REVISITOP}/features/roxford5k_resnet_rsfm120k_gem.mat", feat_path)
    gt = load_ground_truth(gnd_path)
    mat = scipy.io.loadmat(feat_path)
    sim = mat["Q"].T @ mat["X"]  # (n_q, n_db)
    ranks = np.argsort(-sim, axis=1, kind="stable")
    out = evaluate_rankings(ranks, gt.gnd, gt.n_db)
    assert [round(out["mAP"][p], 2) for p in "EMH"] == [84.81, 64.67, 38.47]
