"""Robustness summaries: mean over severities, relative robustness, CE / mCE and relative CE
against values computed by hand from the formulas in docs/ROBUSTNESS.md."""

from __future__ import annotations

import json
import math

import pytest

from harness.robustness.summary import summarize_robustness


def rec(model, corruption, severity, miou):
    return {"model": model, "corruption": corruption, "severity": severity, "mIoU": miou}


# two models, two corruptions, severities 1..3; "ref" is the reference
RECORDS = [
    rec("ref", None, None, 0.80), rec("dpt", "clean", None, 0.90),
    rec("ref", "fog", 1, 0.70), rec("ref", "fog", 2, 0.60), rec("ref", "fog", 3, 0.50),
    rec("dpt", "fog", 1, 0.85), rec("dpt", "fog", 2, 0.80), rec("dpt", "fog", 3, 0.75),
    rec("ref", "gaussian_noise", 1, 0.40), rec("ref", "gaussian_noise", 2, 0.20), rec("ref", "gaussian_noise", 3, 0.00),
    rec("dpt", "gaussian_noise", 1, 0.70), rec("dpt", "gaussian_noise", 2, 0.50), rec("dpt", "gaussian_noise", 3, 0.30),
]


def test_hand_computed_values():
    s = summarize_robustness(RECORDS, reference="ref")
    assert s["corruptions"] == ["fog", "gaussian_noise"] and s["severities"]["fog"] == [1, 2, 3]
    dpt, ref = s["models"]["dpt"], s["models"]["ref"]
    fog, noise = dpt["per_corruption"]["fog"], dpt["per_corruption"]["gaussian_noise"]
    assert fog["mIoU"] == [0.85, 0.80, 0.75]
    assert fog["mean_mIoU"] == pytest.approx(0.80)                     # (0.85 + 0.80 + 0.75) / 3
    assert fog["relative"] == pytest.approx(0.80 / 0.90)
    assert fog["CE"] == pytest.approx((0.15 + 0.20 + 0.25) / (0.30 + 0.40 + 0.50))   # 0.6 / 1.2 = 0.5
    assert fog["rCE"] == pytest.approx((0.05 + 0.10 + 0.15) / (0.10 + 0.20 + 0.30))  # 0.3 / 0.6 = 0.5
    assert noise["mean_mIoU"] == pytest.approx(0.50)
    assert noise["CE"] == pytest.approx((0.30 + 0.50 + 0.70) / (0.60 + 0.80 + 1.00))  # 1.5 / 2.4
    assert noise["rCE"] == pytest.approx((0.20 + 0.40 + 0.60) / (0.40 + 0.60 + 0.80))  # 1.2 / 1.8
    assert dpt["mPC"] == pytest.approx(0.65) and dpt["relative"] == pytest.approx(0.65 / 0.90)
    assert dpt["mCE"] == pytest.approx((0.5 + 1.5 / 2.4) / 2)
    assert dpt["relative_mCE"] == pytest.approx((0.5 + 1.2 / 1.8) / 2)
    assert ref["mCE"] == pytest.approx(1.0) and ref["relative_mCE"] == pytest.approx(1.0)
    assert ref["clean_mIoU"] == 0.80 and ref["mPC"] == pytest.approx((0.6 + 0.2) / 2)


def test_without_reference_ce_is_nan_and_the_rest_stays():
    s = summarize_robustness(RECORDS)
    dpt = s["models"]["dpt"]
    assert math.isnan(dpt["mCE"]) and math.isnan(dpt["per_corruption"]["fog"]["CE"])
    assert dpt["mPC"] == pytest.approx(0.65)


def test_missing_or_failed_cells_make_nan_not_partial_means():
    records = [r for r in RECORDS if not (r["model"] == "dpt" and r["corruption"] == "fog" and r["severity"] == 3)]
    records.append(rec("new", "fog", 1, 0.5))
    s = summarize_robustness(records, reference="ref")
    dpt = s["models"]["dpt"]
    assert math.isnan(dpt["per_corruption"]["fog"]["mIoU"][2])
    assert math.isnan(dpt["per_corruption"]["fog"]["mean_mIoU"]) and math.isnan(dpt["per_corruption"]["fog"]["CE"])
    assert math.isnan(dpt["mPC"]) and math.isnan(dpt["mCE"])
    assert dpt["per_corruption"]["gaussian_noise"]["CE"] == pytest.approx(1.5 / 2.4)
    new = s["models"]["new"]  # no clean record: relative robustness NaN
    assert math.isnan(new["clean_mIoU"]) and math.isnan(new["per_corruption"]["fog"]["relative"])
    failed = summarize_robustness([*RECORDS[:-1], rec("dpt", "gaussian_noise", 3, None)], reference="ref")
    assert math.isnan(failed["models"]["dpt"]["per_corruption"]["gaussian_noise"]["mean_mIoU"])


def test_zero_denominator_gives_nan():
    records = [rec("ref", None, None, 1.0), rec("ref", "fog", 1, 1.0), rec("m", None, None, 0.5),
               rec("m", "fog", 1, 0.4)]
    s = summarize_robustness(records, reference="ref")
    assert math.isnan(s["models"]["m"]["per_corruption"]["fog"]["CE"])  # the reference makes no error
    assert math.isnan(s["models"]["m"]["per_corruption"]["fog"]["rCE"])


def test_result_is_json_data():
    s = summarize_robustness(RECORDS, reference="ref")
    assert json.loads(json.dumps(s))["models"]["dpt"]["per_corruption"]["fog"]["mIoU"] == [0.85, 0.80, 0.75]


@pytest.mark.parametrize("records, reference, message", [
    ([{"model": "a", "mIoU": 0.5}], None, r"record 0: missing key\(s\) corruption"),
    ([rec("a", None, None, 0.5), rec("a", "clean", None, 0.4)], None, r"record 1: a second clean mIoU for model 'a'"),
    ([rec("a", "fog", 1, 0.5), rec("a", "fog", 1, 0.4)], None, r"record 1: a second mIoU for 'a', fog at severity 1"),
    ([rec("a", "fog", "1", 0.5)], None, r"record 0 \(a, fog\): severity '1', expected an integer"),
    ([rec("a", "fog", 1, 0.5)], "b", r"reference model 'b' has no robustness record; expected one of a"),
])
def test_bad_records_are_named(records, reference, message):
    with pytest.raises(ValueError, match=message):
        summarize_robustness(records, reference=reference)
