"""Temperature scaling and the "unknown" rule (stmt.engine.calibration, stmt calibrate)."""

from __future__ import annotations

import numpy as np
import pytest

from stmt.engine import calibration as cal


def test_fit_temperature_recovers_the_temperature_of_the_labels():
    """Labels drawn from softmax(z / 2.5): the NLL is smallest at T = 2.5."""
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(4000, 6))
    p = cal.softmax(logits, 2.5)
    labels = np.array([rng.choice(6, p=row) for row in p])
    t = cal.fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.08)
    assert cal.nll(logits, labels, t) <= min(cal.nll(logits, labels, x) for x in (1.0, 2.0, 3.0))


def test_calibration_error_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(5000, 4))
    p = cal.softmax(logits)
    labels = np.array([rng.choice(4, p=row) for row in p])
    assert cal.expected_calibration_error(p, labels) < 0.03  # right as often as it says
    sharp = cal.softmax(logits, 0.3)  # same ranking, overconfident
    assert cal.expected_calibration_error(sharp, labels) > 0.1
    # after fitting T on these logits the error falls back
    t = cal.fit_temperature(logits / 0.3, labels)
    assert cal.expected_calibration_error(cal.softmax(logits / 0.3, t), labels) < 0.03


def test_auroc_counts_pairs_and_ties():
    assert cal.auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert cal.auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert cal.auroc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert cal.auroc(np.array([2.0]), np.array([2.0])) == 0.5  # a tie counts half
    rng = np.random.default_rng(2)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 400)
    brute = np.mean([(x > y) + 0.5 * (x == y) for x in a for y in b])
    assert cal.auroc(a, b) == pytest.approx(brute)


def test_threshold_flags_at_most_the_allowed_share_of_known_clips():
    rng = np.random.default_rng(3)
    known = rng.uniform(0.4, 1.0, 200)
    other = rng.uniform(0.1, 0.6, 50)
    for rate in (0.0, 0.05, 0.1):
        t = cal.choose_threshold(known, other, rate)
        assert (known < t).mean() <= rate
        # the largest such threshold: a hair higher flags one known clip more
        higher = np.sort(known)[np.searchsorted(np.sort(known), t, side="right")]
        assert (known < higher + 1e-12).mean() > rate
    assert cal.choose_threshold(np.array([]), other) == 0.0


def test_per_source_threshold_holds_the_rate_for_each_source():
    """A source the model is less sure of (lower scores) sets the threshold: no source
    with enough known clips has more than the rate of them flagged; a small one is not
    held to it alone."""
    rng = np.random.default_rng(4)
    sure, unsure, tiny = rng.uniform(0.8, 1.0, 400), rng.uniform(0.3, 1.0, 40), [0.05] * 5
    known = np.concatenate([sure, unsure, tiny])
    sources = np.array(["studio"] * 400 + ["kinect"] * 40 + ["tiny"] * 5)
    t = cal.choose_threshold_per_source(known, sources, 0.05)
    assert t == min(cal.choose_threshold(sure, [], 0.05), cal.choose_threshold(unsure, [], 0.05))
    for s in ("studio", "kinect"):
        assert (known[sources == s] < t).mean() <= 0.05
    pooled = cal.choose_threshold(known, [], 0.05)
    assert (unsure < pooled).mean() > 0.05  # what the pooled rule does to the unsure source
    # no source with min_clips known clips: all together
    assert cal.choose_threshold_per_source(known, sources, 0.05, min_clips=1000) == pooled


def test_threshold_of_each_input_kind_holds_the_rate_for_each_source_of_it():
    """Tracked joint positions (Kinect), which the model is less sure on, get a threshold
    of their own: motion capture's is the higher one the mocap sources allow, each source
    still at most the rate flagged; all kinds together is the lowest (the rule before)."""
    rng = np.random.default_rng(5)
    studio, kinect = rng.uniform(0.6, 1.0, 300), rng.uniform(0.2, 1.0, 100)
    synth = rng.uniform(0.7, 1.0, 50)
    known = np.concatenate([studio, kinect, synth])
    sources = np.array(["studio"] * 300 + ["kinect"] * 100 + ["synth"] * 50)
    kinds = np.where(sources == "kinect", "tracked", "mocap")
    every, by_kind = cal.choose_threshold_by_kind(known, sources, kinds, 0.10)
    assert set(by_kind) == {"mocap", "tracked"}
    assert by_kind["tracked"] == pytest.approx(cal.choose_threshold(kinect, [], 0.10))
    mocap = kinds == "mocap"
    assert by_kind["mocap"] == pytest.approx(
        cal.choose_threshold_per_source(known[mocap], sources[mocap], 0.10)
    )
    assert by_kind["mocap"] > 0.6 > by_kind["tracked"]
    assert every == pytest.approx(cal.choose_threshold_per_source(known, sources, 0.10))
    for s in ("studio", "kinect", "synth"):
        flagged = known[sources == s] < by_kind["tracked" if s == "kinect" else "mocap"]
        assert flagged.mean() <= 0.10
    # one kind only: its threshold is that of all together
    every, by_kind = cal.choose_threshold_by_kind(studio, ["studio"] * 300, ["mocap"] * 300)
    assert by_kind == {"mocap": pytest.approx(every)}
    scored = cal.Scored(
        np.array([0, 1]), [np.zeros((1, 2))] * 2, kinds=np.array(["mocap", "tracked"])
    )
    assert scored.thresholds(0.2, {"tracked": 0.1}).tolist() == [0.2, 0.1]


def test_scored_probs_are_the_mean_of_window_probabilities():
    w = [np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([[1.0, -1.0]])]
    s = cal.Scored(np.array([0, 1]), w)
    p = s.probs(1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5])
    np.testing.assert_allclose(p[1], cal.softmax(w[1])[0])
    sub = s.subset(np.array([False, True]))
    assert sub.labels.tolist() == [1] and len(sub.window_logits) == 1
    assert len(sub.sources) == 1


def test_checkpoint_calibration_is_checked():
    from stmt.checkpoint import check_calibration
    from stmt.errors import InputError

    check_calibration(None, "x.ckpt")
    check_calibration({"temperature": 1.5, "unknown_threshold": 0.3}, "x.ckpt")
    check_calibration({"unknown_threshold": 0.3, "unknown_thresholds": {"mocap": 0.5}}, "x.ckpt")
    for bad in ({"temperature": 0.0}, {"temperature": float("nan")}, {"temperature": "2"},
                {"unknown_threshold": 1.5}, {"unknown_threshold": True}, [1],
                {"unknown_thresholds": {"mocap": 2.0}}, {"unknown_thresholds": [0.3]},
                {"unknown_thresholds": {"mocap": None}}):  # fmt: skip
        with pytest.raises(InputError, match="calibration"):
            check_calibration(bad, "x.ckpt")
