"""Blessing rules (metrics/blessing.py): pure decisions on hand-written numbers."""
import json

import pytest

from facegan.metrics import blessing as B

GOOD_DIV = {"between_std": 30.0, "within_std": 40.0}


# Result key -> the metric request evaluate() records for it in results["protocols"].
REQUEST = {"fid10k": "fid", "is10k": "is", "swd16k": "swd", "ms_ssim10k_pairs": "ms_ssim",
           "fid10k_downscale64": "fid:downscale=64"}


def results(**kw):
    """Hand-written results laid out as evaluate() writes them (keys + their protocols)."""
    r = {"diversity": dict(GOOD_DIV), "comparable": True, "protocols": {}}
    for k, v in kw.items():
        r[k] = v
        if k in REQUEST:
            r["protocols"][k] = {"metric": REQUEST[k].split(":")[0], "request": REQUEST[k]}
    return r


def by_rule(decision, prefix):
    hits = [r for r in decision.rules if r.rule.startswith(prefix)]
    assert hits, f"no rule starting with {prefix!r} in {[r.rule for r in decision.rules]}"
    return hits[0]


def test_defaults_bless_diverse_samples_and_refuse_constant_ones():
    assert B.decide(results()).blessed
    const = B.decide(results(diversity={"between_std": 0.0, "within_std": 0.0}))
    assert not const.blessed
    failed = [r.rule for r in const.rules if not r.passed]
    assert any("between_std" in f for f in failed) and any("within_std" in f for f in failed)
    assert "identical" in by_rule(const, "not degenerate: between_std").reason
    # Flat but different images (e.g. one solid colour per sample) fail only the within rule.
    flat = B.decide(results(diversity={"between_std": 50.0, "within_std": 0.5}))
    assert not flat.blessed
    assert by_rule(flat, "not degenerate: between_std").passed
    assert not by_rule(flat, "not degenerate: within_std").passed


def test_missing_diversity_fails_rather_than_passing_silently():
    d = B.decide({"swd16k": {"avg": 10.0}, "protocols": {"swd16k": {"metric": "swd", "request": "swd"}}})
    assert not d.blessed
    assert "missing" in by_rule(d, "not degenerate").reason


def test_absolute_bounds_match_protocol_named_results():
    th = {"fid": {"max": 50}, "is": {"min": 2.0}}
    ok = B.decide(results(fid10k=49.9, is10k={"mean": 2.5, "std": 0.1}), th)
    assert ok.blessed
    r = by_rule(ok, "fid <= 50")
    assert r.metric == "fid10k" and r.value == pytest.approx(49.9) and r.threshold == 50
    bad = B.decide(results(fid10k=50.1, is10k={"mean": 2.5, "std": 0.1}), th)
    assert not bad.blessed and not by_rule(bad, "fid <= 50").passed
    assert by_rule(bad, "is >= 2").passed
    low_is = B.decide(results(fid10k=10.0, is10k={"mean": 1.5, "std": 0.1}), th)
    assert not low_is.blessed and not by_rule(low_is, "is >= 2").passed


def test_rule_on_a_metric_not_computed_fails():
    d = B.decide(results(swd16k={"avg": 1.0}), {"fid": {"max": 50}})
    assert not d.blessed
    assert "not computed" in by_rule(d, "fid <= 50").reason


def test_nan_never_passes():
    d = B.decide(results(swd16k={"avg": float("nan")}), {"swd": {"max": 1e9}})
    assert not d.blessed


def test_ms_ssim_relative_to_real_pairs_plus_margin():
    th = {"ms_ssim": {"max_above_real": 0.05}}
    ok = B.decide(results(ms_ssim10k_pairs={"generated": 0.24, "real": 0.20}), th)
    assert ok.blessed
    r = by_rule(ok, "ms_ssim <= real pairs")
    assert r.threshold == pytest.approx(0.25) and r.value == pytest.approx(0.24)
    collapsed = B.decide(results(ms_ssim10k_pairs={"generated": 0.26, "real": 0.20}), th)
    assert not collapsed.blessed
    missing_real = B.decide(results(ms_ssim10k_pairs={"generated": 0.1}), th)
    assert not missing_real.blessed


def test_noise_fraction_uses_the_noise_reference():
    th = {"swd": {"max_noise_fraction": 0.5}}
    ok = B.decide(results(swd16k={"avg": 40.0}, noise_reference={"swd": 100.0}), th)
    assert ok.blessed and by_rule(ok, "swd <= 0.5 x noise").threshold == pytest.approx(50.0)
    bad = B.decide(results(swd16k={"avg": 60.0}, noise_reference={"swd": 100.0}), th)
    assert not bad.blessed
    no_ref = B.decide(results(swd16k={"avg": 1.0}), th)
    assert not no_ref.blessed and "noise reference" in no_ref.rules[-1].reason
    assert B.parse_rules(json.dumps(th)).noise_reference_metrics() == ["swd"]


def test_improvement_over_baseline_absolute_and_relative():
    cand = results(swd16k={"avg": 90.0}, fid10k=40.0)
    base = results(swd16k={"avg": 100.0}, fid10k=50.0)
    # Absolute: needs <= 100 - 5 = 95; 90 passes, 96 fails.
    assert B.decide(cand, min_improvement={"swd": 5}, baseline_results=base).blessed
    worse = B.decide(results(swd16k={"avg": 96.0}), min_improvement={"swd": 5}, baseline_results=base)
    assert not worse.blessed
    assert by_rule(worse, "swd beats baseline").threshold == pytest.approx(95.0)
    # Relative: 25% of 50 -> needs <= 37.5; 40 fails.
    rel = B.decide(cand, min_improvement={"fid": "25%"}, baseline_results=base)
    assert not rel.blessed and by_rule(rel, "fid beats baseline").threshold == pytest.approx(37.5)
    # Higher-is-better metric: IS must rise.
    up = B.decide(results(is10k={"mean": 3.0}), min_improvement={"is": 0.5},
                  baseline_results=results(is10k={"mean": 2.4}))
    assert up.blessed
    down = B.decide(results(is10k={"mean": 2.8}), min_improvement={"is": 0.5},
                    baseline_results=results(is10k={"mean": 2.4}))
    assert not down.blessed


def test_no_baseline_rubber_stamps_improvement_rules_but_still_checks_bounds():
    d = B.decide(results(swd16k={"avg": 10.0}), {"swd": {"max": 5}}, min_improvement={"swd": 1})
    assert not d.has_baseline
    assert by_rule(d, "swd beats baseline").passed
    assert "no baseline" in by_rule(d, "swd beats baseline").reason
    assert not d.blessed  # the absolute bound still fails


@pytest.mark.parametrize("bad, needle", [
    ({"fdi": {"max": 1}}, "unknown metric 'fdi'"),
    ({"fid": {"maximum": 1}}, "unknown rule 'maximum'"),
    ({"fid": {"max": "x"}}, "thresholds.fid.max must be a finite number"),
    ({"swd": {"max_noise_fraction": 0}}, "must be > 0"),
    ("{not json", "not valid JSON"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_thresholds_are_refused_naming_the_field(bad, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        B.parse_thresholds(bad)


def test_bad_min_improvement_is_refused():
    with pytest.raises(ValueError, match="ms_ssim"):
        B.parse_min_improvement({"ms_ssim": 0.1})
    with pytest.raises(ValueError, match="bad percentage"):
        B.parse_min_improvement({"fid": "x%"})


def test_decision_serializes_with_reasons():
    d = B.decide(results(swd16k={"avg": 3.0}), {"swd": {"max": 5}})
    out = json.loads(json.dumps(d.to_dict()))
    assert out["blessed"] is True and out["failed"] == []
    assert all(r["reason"] for r in out["rules"])
    assert "BLESSED" in d.summary() and "swd16k = 3" in d.summary()


def test_find_metric_reads_the_recorded_request_not_the_key_text():
    r = results(fid10k=1.0, ms_ssim10k_pairs={"generated": 0.2}, is10k={"mean": 3.0},
                fid10k_downscale64=7.0)
    assert B.find_metric(r, "fid") == ("fid10k", 1.0)
    assert B.find_metric(r, "fid:downscale=64") == ("fid10k_downscale64", 7.0)
    assert B.find_metric(r, "ms_ssim")[0] == "ms_ssim10k_pairs"
    assert B.find_metric(r, "kid") == (None, None)
    # A key that merely looks like a metric is not one: only protocols say what was computed.
    assert B.find_metric({"kid10k": 1.0}, "kid") == (None, None)
    # The headline number is the one the registry names (IS: mean; MS-SSIM: generated pairs).
    assert B.headline(r, "is") == ("is10k", 3.0) and B.headline(r, "ms_ssim") == ("ms_ssim10k_pairs", 0.2)


def test_rules_follow_the_registry_directions_and_rule_keys():
    from facegan.metrics.registry import METRICS
    for name, spec in METRICS.items():
        for k in spec.rule_keys:   # every key the registry allows parses ...
            assert B.parse_rules({name: {k: 1.0}}).thresholds[-1] == B.Rule(name, k, 1.0)
        with pytest.raises(ValueError, match="unknown rule"):   # ... and nothing else
            B.parse_rules({name: {"max_above_real" if "max_above_real" not in spec.rule_keys
                                  else "max_noise_fraction": 1.0}})
        if spec.direction is None:
            with pytest.raises(ValueError, match="no better direction"):
                B.parse_rules(min_improvement={name: 1.0})


def test_rules_are_parsed_once_into_typed_rules_and_round_trip():
    rules = B.parse_rules({"fid:downscale=64": {"max": 30}, "degenerate": {"min_within_std": 5}},
                          {"swd": "10%", "fid": 2})
    assert B.Rule("fid:downscale=64", "max", 30.0) in rules.thresholds
    assert B.Rule("degenerate", "min_within_std", 5.0) in rules.thresholds
    assert B.Rule("degenerate", "min_between_std", 2.0) in rules.thresholds   # the default stays
    assert rules.improvements == [B.Rule("swd", "min_improvement", 0.1, True),
                                  B.Rule("fid", "min_improvement", 2.0)]
    assert rules.metrics() == ["fid:downscale=64", "swd", "fid"]
    again = B.parse_rules(rules.thresholds_json(), rules.min_improvement_json())
    assert set(again) == set(rules)
    # decide() takes the parsed rules as they are
    d = B.decide(results(fid10k_downscale64=31.0, swd16k={"avg": 1.0}, fid10k=1.0), rules)
    assert not d.blessed and not by_rule(d, "fid:downscale=64 <= 30").passed
