"""RecipientDecision.to_dict builds each trace item's dict once and hands out copies (policies.model)."""

from policies.model import CheckResult, Outcome, RecipientDecision


def _decision(*trace: CheckResult) -> RecipientDecision:
    return RecipientDecision("kommune:326", Outcome.ALLOW, "A2", None, None, "§ 1", [], list(trace))


def test_every_decision_gets_its_own_trace_dicts():
    item = CheckResult("C7", "C7_SENDER", True, "gyldig")
    first, second = _decision(item).to_dict(), _decision(item).to_dict()
    expected = [{"step": "C7", "name": "C7_SENDER", "passed": True, "detail": "gyldig"}]
    assert first["trace"] == second["trace"] == expected
    first["trace"][0]["detail"] = "changed"
    assert second["trace"][0]["detail"] == "gyldig"
    assert _decision(item).to_dict()["trace"][0]["detail"] == "gyldig"


def test_an_equal_item_of_other_types_keeps_its_own_values():
    as_bool = CheckResult("C7", "C7_SENDER", True, "gyldig")
    as_int = CheckResult("C7", "C7_SENDER", 1, "gyldig")  # equal to as_bool, and hashed alike
    _decision(as_bool).to_dict()
    passed = _decision(as_int).to_dict()["trace"][0]["passed"]
    assert passed == 1 and type(passed) is int


def test_an_unhashable_item_is_still_written():
    item = CheckResult("C7", "C7_SENDER", True, ["not", "hashable"])
    assert _decision(item).to_dict()["trace"] == [{"step": "C7", "name": "C7_SENDER", "passed": True,
                                                     "detail": ["not", "hashable"]}]
