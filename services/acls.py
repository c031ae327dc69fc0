"""Who may touch which Kafka topic: the broker's ACL bindings, derived from the directory.

The gate's signature check is what proves who *sent* a request; the broker's ACLs decide
who may *read or write a topic* at all. Each principal gets only what its role needs:

- an authority writes ``exchange.requests``, reads its own ``inbox.*`` and ``receipts.*``
  topics and ``ledger.checkpoints``, and may keep offsets in one consumer group named after
  its principal;
- the gate reads ``exchange.requests`` (in its consumer group) and writes the dead-letter topic;
- the relay writes every inbox and receipts topic, and ``ledger.checkpoints``.

Nobody else reads ``exchange.requests``. Kafka denies whatever no binding allows
(``allow.everyone.if.no.acl.found=false``), so there are only ALLOW bindings. Principals are SCRAM
user names: an authority id with ':' written as '.', as in its topic names (``kommune:326`` is
``User:kommune.326``); the services are ``User:xledger-gate`` and ``User:xledger-relay``. An
authority name always holds a '.', a service name never does, so the two cannot collide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from services import topics

GATE_USER = "xledger-gate"
RELAY_USER = "xledger-relay"
# The broker's super user: creates topics, SCRAM users and these bindings; no binding needed.
ADMIN_USER = "xledger-admin"


class AclError(ValueError):
    pass


def authority_user(authority_id: str) -> str:
    """The SCRAM user name of an authority: its id with ':' written as '.' (``kommune:326`` → ``kommune.326``)."""
    user = topics.authority_suffix(authority_id)
    if "." not in user:
        raise AclError(f"authority id {authority_id!r} has no ':' and would not be told apart from a service user")
    return user


def principal(user: str) -> str:
    return f"User:{user}"


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW rule: ``principal`` may do ``operation`` on ``resource_type`` ``name`` (exact, or every name
    starting with it when ``pattern`` is PREFIXED), from any host."""

    principal: str
    resource_type: str  # TOPIC | GROUP
    pattern: str  # LITERAL | PREFIXED
    name: str
    operation: str  # READ | WRITE
    role: str  # authority | gate | relay: why the principal has it

    def to_kafka(self):
        """The kafka-python ``ACL`` for ``KafkaAdminClient.create_acls``."""
        from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

        return ACL(
            principal=self.principal,
            host="*",
            operation=ACLOperation[self.operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(ResourceType[self.resource_type], self.name,
                                             ACLResourcePatternType[self.pattern]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "permission": "ALLOW", "host": "*"}


def _topic(user: str, name: str, operation: str, role: str, pattern: str = "LITERAL") -> Binding:
    return Binding(principal(user), "TOPIC", pattern, name, operation, role)


def authority_bindings(authority_id: str) -> list[Binding]:
    user = authority_user(authority_id)
    return [
        _topic(user, topics.REQUESTS, "WRITE", "authority"),
        _topic(user, topics.inbox(authority_id), "READ", "authority"),
        _topic(user, topics.receipts(authority_id), "READ", "authority"),
        _topic(user, topics.CHECKPOINTS, "READ", "authority"),
        # Offsets of its own consumers, if it keeps them in Kafka; the group grants no topic access.
        Binding(principal(user), "GROUP", "LITERAL", user, "READ", "authority"),
    ]


def gate_bindings(group_id: str) -> list[Binding]:
    return [
        _topic(GATE_USER, topics.REQUESTS, "READ", "gate"),
        Binding(principal(GATE_USER), "GROUP", "LITERAL", group_id, "READ", "gate"),
        _topic(GATE_USER, topics.DEAD_LETTERS, "WRITE", "gate"),
    ]


def relay_bindings() -> list[Binding]:
    # PREFIXED: an authority added to the directory later gets its deliveries without a new binding.
    return [
        _topic(RELAY_USER, topics.INBOX_PREFIX, "WRITE", "relay", pattern="PREFIXED"),
        _topic(RELAY_USER, topics.RECEIPTS_PREFIX, "WRITE", "relay", pattern="PREFIXED"),
        _topic(RELAY_USER, topics.CHECKPOINTS, "WRITE", "relay"),
    ]


def derive(authority_ids: Iterable[str], *, gate_group: str) -> list[Binding]:
    """Every binding the deployment needs, sorted; one principal per authority, checked."""
    ids = sorted(set(authority_ids))
    owners: dict[str, str] = {}
    for authority_id in ids:
        user = authority_user(authority_id)
        if user in owners:
            raise AclError(f"authorities {owners[user]!r} and {authority_id!r} would share the principal User:{user}")
        owners[user] = authority_id
    if gate_group in owners:
        raise AclError(f"gate consumer group {gate_group!r} is an authority's own group name")
    bindings = [b for authority_id in ids for b in authority_bindings(authority_id)]
    return sorted([*bindings, *gate_bindings(gate_group), *relay_bindings()])


def apply(admin, bindings: list[Binding]) -> list[tuple[Binding, str]]:
    """Creates ``bindings`` in one request through a ``KafkaAdminClient``; returns those the broker refused,
    each with the error's name. Creating a binding that exists already succeeds, so this can be re-run.
    """
    acls = [b.to_kafka() for b in bindings]
    result = admin.create_acls(acls)
    # kafka-python lists the created ACLs, and the refusals as bare error classes in request order.
    succeeded = set(result.get("succeeded", []))
    refused = [b for b, acl in zip(bindings, acls) if acl not in succeeded]
    errors = [_error_name(err) for err in result.get("failed", [])]
    return list(zip(refused, errors + ["not created"] * (len(refused) - len(errors))))


def _error_name(err) -> str:
    cls = err if isinstance(err, type) else type(err)
    return cls.__name__
