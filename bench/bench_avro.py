"""Avro: our codec (single-object encoding, fastavro validation, record validation, decode with the
newest reader schema) on the exchange envelope with its payload, vs bare fastavro schemaless
write + read of the same records.  Run: ``python -m bench.bench_avro``."""
from __future__ import annotations

import io
import json

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from bench.common import paired_rates, row
from bench.messages import publisher, requests
from schemas.codec import AvroCodec
from schemas.validation import validate

ENVELOPE = "dk.xledger.ExchangeRequest"


def run(n: int = 2000, repeat: int = 5) -> list[dict]:
    codec = AvroCodec()
    pub = publisher(codec=codec)
    reqs = list(requests(min(n, 300)))
    envelopes = [pub.envelope(**r) for r in reqs]
    payload_types = [e["payload_type"] for e in envelopes]
    payloads = [r["payload"] for r in reqs]
    reg = codec.registry
    env_schema = parse_schema(reg.latest(ENVELOPE).raw)  # parsed once, with fastavro's hint
    pay_schema = {t: parse_schema(reg.latest(t).raw) for t in set(payload_types)}
    items = [(envelopes[i % len(envelopes)], payloads[i % len(payloads)], payload_types[i % len(payloads)])
             for i in range(n)]

    def ours() -> int:
        for env, payload, ptype in items:
            body = codec.encode(ptype, payload)
            data = codec.encode(ENVELOPE, dict(env, payload=body))
            rec = codec.decode(data, expect=ENVELOPE).record
            validate(ENVELOPE, rec)
            p = codec.decode(rec["payload"], expect=ptype).record
            validate(ptype, p)
        return len(items)

    def bare() -> int:
        for env, payload, ptype in items:
            buf = io.BytesIO()
            schemaless_writer(buf, pay_schema[ptype], payload)
            out = io.BytesIO()
            schemaless_writer(out, env_schema, dict(env, payload=buf.getvalue()))
            out.seek(0)
            rec = schemaless_reader(out, env_schema, env_schema)
            schemaless_reader(io.BytesIO(rec["payload"]), pay_schema[ptype], pay_schema[ptype])
        return len(items)

    ours(), bare()  # warm up
    rates = paired_rates({"ours": ours, "bare": bare}, repeat)
    size = len(codec.encode(ENVELOPE, envelopes[0]))
    return [
        row("avro.envelope_roundtrip", rates["ours"], "envelopes/s",
            f"bare fastavro schemaless_writer+reader, envelope+payload ({size} B)", rates["bare"], target=None),
    ]


if __name__ == "__main__":
    for r in run():
        print(json.dumps(r, ensure_ascii=False))
