"""The witness as a process (`xledger witness serve`) that keeps its state across a kill -9, and
the relay's cosigning thread: an unreachable witness never holds up deliveries, is asked again
later, and each cosigned checkpoint reaches the compacted topic ledger.checkpoints, where a
monitor follows it."""

from __future__ import annotations

import json
import signal
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import replace

from typer.testing import CliRunner

from ledger.checkpoint import encode_public_key, load_private_key
from ledger.witness import SIZE_CONTENT_TYPE, format_add_checkpoint
from services import topics
from services.cli import app
from services.demo import KALUNDBORG_SOCIAL
from tests.harness import ksp_runtime, read_topic, running, wait_for
from tests.ledger.conftest import fill
from tests.test_walking_skeleton import publish_pair
from tests.witness.conftest import (
    ORIGIN,
    PRIVATE_KEY,
    RunningWitness,
    free_port,
    log_vkey,
    stop,
    wait_http,
    xledger_process,
)

PUBLIC_KEY = encode_public_key(load_private_key(PRIVATE_KEY).public_key())


def _post(url: str, body: bytes) -> tuple[int, str, str]:
    request = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("Content-Type", "")


def test_a_witness_restarted_mid_run_keeps_its_state(ledger, ledger_url, tmp_path):
    runner = CliRunner()
    key_file, db = tmp_path / "witness.key", tmp_path / "witness.sqlite"
    r = runner.invoke(app, ["witness", "keygen", "--name", "witness.test/tilsyn", "--out", str(key_file)])
    assert r.exit_code == 0, r.output
    vkey = r.stdout.strip()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert runner.invoke(app, ["witness", "keygen", "--name", "w", "--out", str(key_file)]).exit_code == 2
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ("witness", "serve", "--name", "witness.test/tilsyn", "--key-file", str(key_file), "--db", str(db),
             "--log", log_vkey(), "--port", str(port))
    env = {"XLEDGER_LEDGER_URL": ledger_url, "XLEDGER_CHECKPOINT_KEY": PRIVATE_KEY, "XLEDGER_LEDGER_ORIGIN": ORIGIN,
           "XLEDGER_CHECKPOINT_INTERVAL": "10", "XLEDGER_WITNESSES": f"{vkey}@{url}"}
    witness = xledger_process(*serve)
    try:
        assert wait_http(url + "/checkpoint/x"), stop(witness)
        fill(ledger, 0, 12)
        r = runner.invoke(app, ["ledger", "integrate"], env=env)
        assert "cosigned checkpoint 26" in r.stdout, r.output

        witness.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        witness.wait(10)
        witness = xledger_process(*serve)
        assert wait_http(url + "/checkpoint/x"), stop(witness)

        # It still knows size 26: a request from 0 is answered with 409 and its size.
        note = ledger.integrity.checkpoint(26).log_signed().to_note()
        status, body, ctype = _post(url, format_add_checkpoint(0, [], note))
        assert (status, body, ctype.split(";")[0]) == (409, "26\n", SIZE_CONTENT_TYPE)
        with urllib.request.urlopen(f"{url}/checkpoint/{ORIGIN}", timeout=10) as answer:
            assert "\n26\n" in answer.read().decode()

        # The log forgot what it had (its cosignature rows are gone): it learns 26 from the 409.
        ledger.integrity.backend  # noqa: B018 - same ledger the CLI writes to
        from tests.ledger.conftest import Raw

        Raw(ledger).run("DELETE FROM xl_cosignatures")
        fill(ledger, 12, 10)
        r = runner.invoke(app, ["ledger", "integrate"], env=env)
        assert "cosigned checkpoint 47" in r.stdout, r.output
    finally:
        stop(witness)


def test_an_unreachable_witness_never_holds_up_deliveries(settings, broker, tmp_path):
    # A witness that accepts connections and never answers: every request waits out the timeout.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)
    silent = RunningWitness("witness.test/silent", tmp_path / "silent.sqlite")
    settings = replace(settings, checkpoint_key=PRIVATE_KEY, ledger_origin=ORIGIN, checkpoint_interval=2,
                       witnesses=f"{silent.vkey}@http://127.0.0.1:{blackhole.getsockname()[1]}",
                       witness_timeout_ms=120_000, cosign_retry_ms=200)
    stopping = threading.Event()
    try:
        with ksp_runtime(settings) as rt:
            rt.start_cosigning(stopping)
            publish_pair(rt)
            inbox = rt.inbox(KALUNDBORG_SOCIAL[0])
            received: list = []
            with running(rt.gate_worker(), rt.relay()):
                # Delivered, integrated and signed while the witness request hangs for two minutes.
                assert wait_for(lambda: received.extend(inbox.poll(200)) or len(received) >= 1, 60)
                assert wait_for(lambda: rt.ledger.integrity.latest_checkpoint() is not None, 30)
            inbox.consumer.close()
            assert len(received) == 1
            latest = rt.ledger.integrity.latest_checkpoint()
            assert [s.name for s in latest.signatures] == [ORIGIN]  # nothing cosigned it
    finally:
        stopping.set()
        blackhole.close()


def test_a_witness_that_comes_back_is_asked_again_and_the_topic_carries_the_cosigned_checkpoint(
        settings, broker, tmp_path, ledger_url):
    port = free_port()
    witness = RunningWitness("witness.test/tilsyn", tmp_path / "w.sqlite", port)  # not started yet: down
    settings = replace(settings, checkpoint_key=PRIVATE_KEY, ledger_origin=ORIGIN, checkpoint_interval=2,
                       witnesses=witness.entry, witness_timeout_ms=2000, cosign_retry_ms=200)
    stopping = threading.Event()
    try:
        with ksp_runtime(settings) as rt:
            rt.start_cosigning(stopping)
            publish_pair(rt)
            with running(rt.gate_worker(), rt.relay()):
                assert wait_for(lambda: rt.ledger.integrity.latest_checkpoint() is not None, 60)
                witness.http.__enter__()  # the witness comes back
                try:
                    assert wait_for(lambda: len(rt.ledger.integrity.latest_checkpoint().signatures) == 2, 60)
                finally:
                    witness.http.__exit__()
            size = rt.ledger.integrity.latest_checkpoint().checkpoint.tree_size
            records = read_topic(broker.bootstrap, topics.CHECKPOINTS, 1)
            notes = [r.value.decode() for r in records]
            assert records[-1].key == ORIGIN.encode()
            assert any(f"\n{size}\n" in n and "\u2014 witness.test/tilsyn " in n for n in notes)

            # A monitor following the topic (and the log endpoint for proofs) adopts it.
            from services.logserver import create_log_app
            from tests.witness.conftest import ThreadServer

            state = tmp_path / "monitor.json"
            with ThreadServer(create_log_app(rt.ledger)) as log_endpoint:
                done = xledger_process("monitor", "--topic", "--bootstrap-servers", broker.bootstrap, "--log-url",
                                       log_endpoint.url, "--log-key", PUBLIC_KEY, "--state", str(state),
                                       "--witness", witness.vkey, "--once")
                out, err = done.communicate(timeout=60)
            assert done.returncode == 0, err
            assert json.loads(state.read_text())["tree_size"] == size
    finally:
        stopping.set()
