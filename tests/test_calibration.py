"""Per-device calibration from estimated-vs-measured pairs."""

from estimator.calibration import A100_PRIOR_OFFSET_BYTES, Pair, fit

GB = 10**9


def test_prior_stands_in_until_pairs_exist():
    prior = fit("a100-80gb", "paper", [])
    assert (prior.source, prior.pairs) == ("prior", 0)
    assert prior.apply(10 * GB) == 10 * GB + A100_PRIOR_OFFSET_BYTES
    nothing = fit("l4-24gb", "framework", [])
    assert nothing.source == "none" and nothing.apply(123) == 123


def test_a_constant_gap_is_an_offset():
    pairs = [Pair(e, e + 300_000_000) for e in (1 * GB, 2 * GB, 5 * GB, 9 * GB)]
    calibration = fit("h100-80gb", "framework", pairs)
    assert calibration.source == "fit" and calibration.pairs == 4
    assert calibration.scale == 1.0 and calibration.offset_bytes == 300_000_000


def test_a_proportional_gap_is_a_scale():
    pairs = [Pair(e, int(e * 1.1) + 50_000_000) for e in (1 * GB, 3 * GB, 6 * GB, 12 * GB)]
    calibration = fit("h100-80gb", "framework", pairs)
    assert abs(calibration.scale - 1.1) < 1e-9
    assert abs(calibration.apply(20 * GB) - (22 * GB + 50_000_000)) <= 2


def test_noise_does_not_invent_a_scale():
    gaps = (400, 402, 398, 401, 399)
    pairs = [Pair(e * GB, e * GB + g * 10**6) for e, g in zip((1, 2, 4, 8, 16), gaps, strict=True)]
    assert fit("v100-32gb", "paper", pairs).scale == 1.0
