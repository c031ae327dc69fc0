"""The broker ACL bindings derived from the directory (`xledger topics acls`).

The embedded broker (Tansu) has no SASL and no authorizer, so no broker here can enforce these
bindings. These tests check the bindings themselves: exact content for a sample of authorities,
one principal per authority, and, through a model of how Kafka's authorizer matches a binding,
that no authority reaches another's inbox or the requests. `--apply` is checked against a
recording stand-in for kafka-python's admin client (a unit test: the real client's `create_acls`
needs a broker with an authorizer).
"""

from __future__ import annotations

import json
from itertools import permutations

import pytest
from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType
from kafka.errors import SecurityDisabledError
from typer.testing import CliRunner

from policies.directory import Directory
from services import acls, topics
from services.acls import AclError, Binding, derive
from services.cli import app

DIRECTORY = Directory.load()
BINDINGS = derive(DIRECTORY.orgs, gate_group="xledger-gate")


def rules_of(principal: str) -> set[tuple[str, str, str, str]]:
    return {(b.operation, b.resource_type, b.pattern, b.name) for b in BINDINGS if b.principal == principal}


# -- a model of Kafka's authorizer, to ask what a principal may do ------------------------------------------

IMPLIES = {"DESCRIBE": {"READ", "WRITE", "DELETE", "ALTER"}}  # Kafka: these operations imply DESCRIBE


def matches(binding: Binding, resource_type: str, name: str) -> bool:
    if binding.resource_type != resource_type:
        return False
    if binding.name == "*" and binding.pattern == "LITERAL":
        return True
    return name == binding.name if binding.pattern == "LITERAL" else name.startswith(binding.name)


def allowed(principal: str, operation: str, resource_type: str, name: str) -> bool:
    """Whether any ALLOW binding grants it (the bindings are all ALLOW; Kafka denies what none allows)."""
    for b in BINDINGS:
        if b.principal not in (principal, "User:*") or not matches(b, resource_type, name):
            continue
        if b.operation in ("ALL", operation) or b.operation in IMPLIES.get(operation, ()):
            return True
    return False


# -- exact content -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("authority, user", [
    ("kommune:326", "kommune.326"),
    ("politikreds:midt-vestsjaelland", "politikreds.midt-vestsjaelland"),
    ("kriminalforsorgen:horserod", "kriminalforsorgen.horserod"),
    ("region:ostdanmark", "region.ostdanmark"),
    ("pet:national", "pet.national"),
])
def test_an_authority_writes_requests_and_reads_only_its_own_topics(authority, user):
    assert rules_of(f"User:{user}") == {
        ("WRITE", "TOPIC", "LITERAL", "exchange.requests"),
        ("READ", "TOPIC", "LITERAL", f"inbox.{user}"),
        ("READ", "TOPIC", "LITERAL", f"receipts.{user}"),
        ("READ", "TOPIC", "LITERAL", "ledger.checkpoints"),
        ("READ", "GROUP", "LITERAL", user),
    }
    assert acls.authority_user(authority) == user


def test_the_gate_reads_requests_in_its_group_and_writes_dead_letters():
    assert rules_of("User:xledger-gate") == {
        ("READ", "TOPIC", "LITERAL", "exchange.requests"),
        ("READ", "GROUP", "LITERAL", "xledger-gate"),
        ("WRITE", "TOPIC", "LITERAL", "exchange.requests.dlq"),
    }


def test_the_relay_writes_inboxes_receipts_and_checkpoints():
    assert rules_of("User:xledger-relay") == {
        ("WRITE", "TOPIC", "PREFIXED", "inbox."),
        ("WRITE", "TOPIC", "PREFIXED", "receipts."),
        ("WRITE", "TOPIC", "LITERAL", "ledger.checkpoints"),
    }


def test_the_gate_group_follows_the_setting():
    custom = derive(["kommune:326"], gate_group="gate-blue")
    assert ("User:xledger-gate", "gate-blue") in {(b.principal, b.name) for b in custom if b.resource_type == "GROUP"}


def test_one_principal_per_authority_and_nothing_else():
    principals = {b.principal for b in BINDINGS}
    expected = {f"User:{org.replace(':', '.')}" for org in DIRECTORY.orgs}
    assert len(expected) == len(DIRECTORY.orgs) == 140
    assert principals == expected | {"User:xledger-gate", "User:xledger-relay"}
    assert len(BINDINGS) == 5 * len(DIRECTORY.orgs) + 3 + 3 == len(set(BINDINGS))


def test_no_wildcards_no_all_no_cluster_and_only_allow():
    for b in BINDINGS:
        kafka_acl = b.to_kafka()
        assert kafka_acl.permission_type is ACLPermissionType.ALLOW and kafka_acl.host == "*"
        assert b.operation in ("READ", "WRITE") and b.resource_type in ("TOPIC", "GROUP")
        assert b.principal != "User:*" and b.name not in ("*", "")


# -- what the bindings allow, asked the way Kafka would ---------------------------------------------------

def test_no_authority_reads_another_authoritys_inbox_or_receipts():
    users = {org: f"User:{acls.authority_user(org)}" for org in DIRECTORY.orgs}
    for reader, owner in permutations(sorted(DIRECTORY.orgs), 2):
        for topic in (topics.inbox(owner), topics.receipts(owner)):
            assert not allowed(users[reader], "READ", "TOPIC", topic), (reader, topic)
            assert not allowed(users[reader], "DESCRIBE", "TOPIC", topic), (reader, topic)
    for org, user in users.items():
        assert allowed(user, "READ", "TOPIC", topics.inbox(org)) and allowed(user, "READ", "TOPIC", topics.receipts(org))


def test_only_the_gate_reads_the_requests():
    readers = {b.principal for b in BINDINGS if allowed(b.principal, "READ", "TOPIC", topics.REQUESTS)}
    assert readers == {"User:xledger-gate"}


def test_only_the_gate_writes_dead_letters_and_only_the_relay_delivers():
    principals = {b.principal for b in BINDINGS}
    assert {p for p in principals if allowed(p, "WRITE", "TOPIC", topics.DEAD_LETTERS)} == {"User:xledger-gate"}
    for topic in (topics.inbox("kommune:326"), topics.receipts("kommune:326"), topics.CHECKPOINTS):
        assert {p for p in principals if allowed(p, "WRITE", "TOPIC", topic)} == {"User:xledger-relay"}, topic


def test_every_authority_may_send_and_read_the_checkpoints():
    for org in DIRECTORY.orgs:
        user = f"User:{acls.authority_user(org)}"
        assert allowed(user, "WRITE", "TOPIC", topics.REQUESTS)
        assert allowed(user, "READ", "TOPIC", topics.CHECKPOINTS)
        assert not allowed(user, "READ", "GROUP", "xledger-gate")


# -- naming is unambiguous ---------------------------------------------------------------------------------

def test_two_authorities_on_one_principal_are_refused():
    with pytest.raises(AclError, match="would share the principal User:a.b.c"):
        derive(["a:b.c", "a.b:c"], gate_group="xledger-gate")


def test_an_authority_id_without_a_colon_is_refused():
    with pytest.raises(AclError, match="xledger-gate"):
        derive(["xledger-gate"], gate_group="g")


def test_a_gate_group_that_is_an_authoritys_group_is_refused():
    with pytest.raises(AclError, match="kommune.326"):
        derive(["kommune:326"], gate_group="kommune.326")


# -- applying: exactly these bindings reach the admin client ------------------------------------------------

class RecordingAdmin:
    """Stands in for KafkaAdminClient: records create_acls, answers like kafka-python does."""

    def __init__(self, refuse: set[str] = frozenset()):
        self.calls: list[list[ACL]] = []
        self.refuse = refuse
        self.closed = False

    def create_acls(self, acls_):
        self.calls.append(list(acls_))
        failed = [a for a in acls_ if a.principal in self.refuse]
        return {"succeeded": [a for a in acls_ if a not in failed], "failed": [SecurityDisabledError] * len(failed)}

    def close(self):
        self.closed = True


def test_apply_issues_exactly_the_derived_bindings():
    admin = RecordingAdmin()
    assert acls.apply(admin, BINDINGS) == []
    (sent,) = admin.calls
    assert all(isinstance(a, ACL) for a in sent)
    assert sent == [b.to_kafka() for b in BINDINGS] and len(set(sent)) == len(BINDINGS)
    kommune = {(a.operation, a.resource_pattern) for a in sent if a.principal == "User:kommune.326"}
    assert kommune == {
        (ACLOperation.WRITE, ResourcePattern(ResourceType.TOPIC, "exchange.requests", ACLResourcePatternType.LITERAL)),
        (ACLOperation.READ, ResourcePattern(ResourceType.TOPIC, "inbox.kommune.326", ACLResourcePatternType.LITERAL)),
        (ACLOperation.READ, ResourcePattern(ResourceType.TOPIC, "receipts.kommune.326", ACLResourcePatternType.LITERAL)),
        (ACLOperation.READ, ResourcePattern(ResourceType.TOPIC, "ledger.checkpoints", ACLResourcePatternType.LITERAL)),
        (ACLOperation.READ, ResourcePattern(ResourceType.GROUP, "kommune.326", ACLResourcePatternType.LITERAL)),
    }


def test_apply_names_the_bindings_the_broker_refused():
    refused = acls.apply(RecordingAdmin(refuse={"User:xledger-relay"}), BINDINGS)
    assert [b.principal for b, _ in refused] == ["User:xledger-relay"] * 3
    assert {error for _, error in refused} == {"SecurityDisabledError"}


@pytest.fixture
def recording_admin(monkeypatch):
    made: list[tuple[RecordingAdmin, object]] = []

    def make_admin(settings, **_):
        admin = RecordingAdmin(refuse=getattr(make_admin, "refuse", set()))
        made.append((admin, settings))
        return admin

    monkeypatch.setattr("services.kafka.make_admin", make_admin)
    return made, make_admin


SASL_ENV = {
    "XLEDGER_SECURITY_PROTOCOL": "SASL_SSL", "XLEDGER_SASL_MECHANISM": "SCRAM-SHA-512",
    "XLEDGER_SASL_USERNAME": "xledger-admin", "XLEDGER_SASL_PASSWORD": "not-a-real-password",
}


def test_cli_apply_sends_every_binding_as_the_configured_admin(recording_admin):
    made, _ = recording_admin
    result = CliRunner().invoke(app, ["topics", "acls", "--apply", "--bootstrap-servers", "kafka:9092"], env=SASL_ENV)
    assert result.exit_code == 0, result.output
    assert f"{len(BINDINGS)} bindings applied for 140 authorities" in result.output
    ((admin, settings),) = made
    assert admin.calls == [[b.to_kafka() for b in BINDINGS]] and admin.closed
    assert (settings.security_protocol, settings.sasl_mechanism, settings.sasl_username) == (
        "SASL_SSL", "SCRAM-SHA-512", "xledger-admin")


def test_cli_apply_fails_when_the_broker_refuses(recording_admin):
    _, make_admin = recording_admin
    make_admin.refuse = {"User:xledger-gate"}
    result = CliRunner().invoke(app, ["topics", "acls", "--apply", "--bootstrap-servers", "kafka:9092"], env=SASL_ENV)
    assert result.exit_code == 1
    assert "refused: User:xledger-gate READ TOPIC LITERAL exchange.requests: SecurityDisabledError" in result.output
    assert f"3 of {len(BINDINGS)} bindings were refused" in result.output


def test_cli_apply_reports_an_unreachable_broker_in_one_line(monkeypatch):
    from kafka.errors import KafkaTimeoutError

    def unreachable(settings, **_):  # what kafka-python 3's admin client raises when no broker answers
        raise KafkaTimeoutError("Unable to bootstrap from ['kafka:9092']")

    monkeypatch.setattr("services.kafka.make_admin", unreachable)
    result = CliRunner().invoke(app, ["topics", "acls", "--apply", "--bootstrap-servers", "kafka:9092"], env=SASL_ENV)
    assert result.exit_code == 3  # could not check, as every command that cannot connect
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: cannot reach the Kafka broker at kafka:9092 within ") and "KafkaTimeoutError" in line


def test_cli_apply_reports_a_refusing_broker_as_exit_1(monkeypatch):
    from kafka.errors import ClusterAuthorizationFailedError

    def refusing(settings, **_):
        raise ClusterAuthorizationFailedError("not a super user")

    monkeypatch.setattr("services.kafka.make_admin", refusing)
    result = CliRunner().invoke(app, ["topics", "acls", "--apply", "--bootstrap-servers", "kafka:9092"], env=SASL_ENV)
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: bindings not applied: ") and "not a super user" in line


def test_cli_apply_needs_a_broker():
    result = CliRunner().invoke(app, ["topics", "acls", "--apply"], env={"XLEDGER_BOOTSTRAP_SERVERS": ""})
    assert result.exit_code == 2 and "--bootstrap-servers" in result.output


def test_cli_prints_the_bindings_as_json_and_as_a_table():
    runner = CliRunner()
    as_json = runner.invoke(app, ["topics", "acls", "--json"], env={"XLEDGER_GROUP_ID": "xledger-gate"})
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == [b.as_dict() for b in BINDINGS]
    table = runner.invoke(app, ["topics", "acls"], env={"XLEDGER_GROUP_ID": "xledger-gate"})
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split() == ["principal", "operation", "resource", "pattern", "name"]
    assert len(lines) == 1 + len(BINDINGS) + 1
    assert lines[1 + BINDINGS.index(Binding("User:kommune.326", "TOPIC", "LITERAL", "inbox.kommune.326", "READ",
                                             "authority"))].split() == [
        "User:kommune.326", "READ", "TOPIC", "LITERAL", "inbox.kommune.326"]


def test_cli_reports_a_broken_directory(tmp_path):
    (tmp_path / "organisations.yaml").write_text("organisations: {'kommune:326': {name: X, roles: []}}\n")
    (tmp_path / "cooperations.yaml").write_text("cooperations: {}\n")
    result = CliRunner().invoke(app, ["topics", "acls", "--directory", str(tmp_path)])
    assert result.exit_code == 2 and "organisations.yaml" in result.output and "roles" in result.output
