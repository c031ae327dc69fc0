"""Policy engine benchmark: our engine (full trace) vs cedarpy on an equivalent SSP subset.

``run() -> list[dict]`` returns rows
``{"name", "value", "unit", "baseline", "baseline_value", "ratio", "target_ratio"}``.
For throughput rows ``ratio = value / baseline_value`` (higher is better); for latency
rows ``ratio = baseline_value / value`` (also higher is better, i.e. our speed-up).
Target: our decisions/s >= 5x cedarpy ``is_authorized`` (pre-parsed PolicySet and
Entities).  Run: ``python -m bench.bench_policy``.

The Cedar side only evaluates the SSP role / purpose / membership / investigative-purpose
checks (a subset of our procedure) and produces no trace; our engine runs the whole
decision procedure (C7 … P-rule) with a full trace and the request digest.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from bench.common import paired_rates
from policies.engine import PolicyEngine
from policies.model import ExchangeRequest

CASES = Path(__file__).resolve().parent.parent / "policies" / "cases"

SSP_ROLES = ["POLICE", "MUNI_SCHOOL", "MUNI_SOCIAL_CHILD", "MUNI_SOCIAL_ADULT", "MUNI_SSP_UNIT",
             "MUNI_JOBCENTER", "KRIMINALFORSORGEN", "SELF_GOV_EDU", "SELF_GOV_SOCIAL",
             "SELF_GOV_EMPLOY"]

CEDAR_POLICIES = """
permit (principal, action == Action::"disclose", resource)
when {
  context.context == "SSP" &&
  %(roles)s.contains(principal.role) &&
  %(roles)s.contains(resource.role) &&
  principal in context.cooperation &&
  resource in context.cooperation &&
  ["PREVENTIVE_COORDINATION", "EXTREMISM_RISK_ASSESSMENT"].contains(context.purpose)
};
forbid (principal, action, resource)
when { ["CRIMINAL_INVESTIGATION", "PROSECUTION"].contains(context.purpose) };
""" % {"roles": json.dumps(SSP_ROLES)}


def _request(n_recipients: int = 1, occurred_at: str = "2026-03-10T10:00:00+01:00") -> ExchangeRequest:
    recips = [{"org": "kommune:326", "role": "MUNI_SSP_UNIT"}]
    extra = ["kommune:306", "kommune:316", "kommune:329", "kommune:253", "kommune:259",
             "kommune:350", "kommune:265"]
    recips += [{"org": o, "role": "MUNI_SSP_UNIT"} for o in extra[: n_recipients - 1]]
    return ExchangeRequest.model_validate({
        "id": "bench-ssp", "occurred_at": occurred_at,
        "sender": {"org": "politikreds:midt-vestsjaelland", "role": "POLICE"},
        "recipients": recips, "context": "INFOHUS_KOMMUNE" if n_recipients > 1 else "SSP",
        "underlying_basis": "SSP",
        "cooperation_id": "infohus:midt-vestsjaelland" if n_recipients > 1 else "ssp:kalundborg",
        "purpose": "PREVENTIVE_COORDINATION", "subject": {"age": 15},
        "data_categories": ["IDENTITY", "CRIMINAL", "RENT_PRIVATE"],
        "necessity": "Repeated shoplifting; SSP needs it to plan an early preventive talk.",
    })


def _time(fn, n: int, repeat: int = 5) -> tuple[float, float]:
    """Return (calls/s over all runs, median µs per call)."""
    per_call = []
    total_t = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        total_t += dt
        per_call.append(dt / n * 1e6)
    return (n * repeat) / total_t, statistics.median(per_call)


def _single_latencies(fn, n: int) -> float:
    lat = []
    pc = time.perf_counter_ns
    for _ in range(n):
        t0 = pc()
        fn()
        lat.append(pc() - t0)
    return statistics.median(lat) / 1000.0


def run(n: int = 20000) -> list[dict]:
    engine = PolicyEngine.load_default()
    req = _request(1)
    dec = engine.decide(req)
    assert dec.results[0].rule == "P1" and len(dec.results[0].trace) >= 10
    # the same request in version 2's time (dk-115-2026-12-15: its own step order and tables)
    req_v2 = _request(1, "2027-03-10T10:00:00+01:00")
    dec_v2 = engine.decide(req_v2)
    assert dec_v2.results[0].rule == "P1" and dec_v2.policy_version != dec.policy_version
    ours_med = _single_latencies(lambda: engine.decide(req), n)
    req8 = _request(8)
    assert all(r.rule == "P1" for r in engine.decide(req8).results)
    r8_rps, _ = _time(lambda: engine.decide(req8), max(1, n // 8))
    per_recipient_us = 1e6 / (r8_rps * 8)

    rows: list[dict] = []
    try:
        import cedarpy  # type: ignore
    except ImportError:  # pragma: no cover
        cedarpy = None

    c_dps = c_med = b_dps = None
    ours_dps, _ = _time(lambda: engine.decide(req), n)
    v2_dps, _ = _time(lambda: engine.decide(req_v2), n)
    if cedarpy is not None:
        ps = cedarpy.PolicySet.from_str(CEDAR_POLICIES)
        ents = cedarpy.Entities.from_json_str(json.dumps([
            {"uid": {"type": "Coop", "id": "ssp:kalundborg"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Org", "id": "politikreds:midt-vestsjaelland"},
             "attrs": {"role": "POLICE"}, "parents": [{"type": "Coop", "id": "ssp:kalundborg"}]},
            {"uid": {"type": "Org", "id": "kommune:326"},
             "attrs": {"role": "MUNI_SSP_UNIT"}, "parents": [{"type": "Coop", "id": "ssp:kalundborg"}]},
        ]))
        creq = {
            "principal": 'Org::"politikreds:midt-vestsjaelland"',
            "action": 'Action::"disclose"',
            "resource": 'Org::"kommune:326"',
            "context": {"context": "SSP", "purpose": "PREVENTIVE_COORDINATION",
                        "cooperation": {"__entity": {"type": "Coop", "id": "ssp:kalundborg"}}},
        }
        assert cedarpy.is_authorized(creq, ps, ents).allowed
        bad = dict(creq, context=dict(creq["context"], purpose="CRIMINAL_INVESTIGATION"))
        assert not cedarpy.is_authorized(bad, ps, ents).allowed
        # Interleaved rounds (ours, cedar, ours, …): noise on a shared machine hits both alike.
        def loop(fn):
            def f():
                for _ in range(n):
                    fn()
                return n
            return f
        rates = paired_rates({"ours": loop(lambda: engine.decide(req)),
                              "ours_v2": loop(lambda: engine.decide(req_v2)),
                              "cedar": loop(lambda: cedarpy.is_authorized(creq, ps, ents))}, 5)
        ours_dps, v2_dps, c_dps = rates["ours"], rates["ours_v2"], rates["cedar"]
        c_med = _single_latencies(lambda: cedarpy.is_authorized(creq, ps, ents), n)
        batch = [creq] * 100
        bt, _ = _time(lambda: cedarpy.is_authorized_batch(batch, ps, ents), max(1, n // 100))
        b_dps = bt * 100

    def row(name, value, unit, baseline, bval, higher_better=True, target=None):
        ratio = None
        if bval:
            ratio = round(value / bval if higher_better else bval / value, 2)
        return {"name": name, "value": round(value, 2), "unit": unit, "baseline": baseline,
                "baseline_value": round(bval, 2) if bval else None, "ratio": ratio,
                "target_ratio": target}

    rows.append(row("policy.decide.ssp.throughput", ours_dps, "decisions/s",
                    "cedarpy.is_authorized (pre-parsed PolicySet+Entities, SSP subset)", c_dps,
                    True, 5.0))
    rows.append(row("policy.decide.ssp_v2.throughput", v2_dps, "decisions/s",
                    "cedarpy.is_authorized (pre-parsed PolicySet+Entities, SSP subset)", c_dps, True, 5.0))
    rows.append(row("policy.decide.ssp.median_latency", ours_med, "µs/decision",
                    "cedarpy.is_authorized median", c_med, False, None))
    rows.append(row("policy.decide.ssp.throughput_vs_batch", ours_dps, "decisions/s",
                    "cedarpy.is_authorized_batch (100/batch)", b_dps, True, None))
    rows.append(row("policy.decide.infohus_8_recipients.per_recipient", per_recipient_us,
                    "µs/recipient", "target 10 µs/recipient", 10.0, False, 1.0))
    return rows


def main() -> None:
    rows = run()
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    main()
