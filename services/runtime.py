"""Wiring: builds the gate, the relay and agency clients from Settings. No logic of its own."""

from __future__ import annotations

from functools import cached_property

from ledger.application import Ledger
from ledger.privacy import LedgerSealer
from policies.engine import PolicyEngine
from schemas.codec import AvroCodec
from services import topics, trust
from services.agency import Inbox, Publisher
from services.config import Settings
from services.delivery import DeliveryRelay
from services.gate import GatePipeline, GateWorker
from services.kafka import create_topics, make_admin, make_consumer, make_producer
from services.keyring import DEV_KEY_ID, dev_private_key
from services.keyset import LiveKeySet, live_keyset


# Ledger entries one maintain step folds into the Merkle tree and the read models: ~0.1–0.3 s of
# work, so an inline relay's deliveries (and a maintainer's stop) never wait long behind a backlog.
MAINTAIN_STEP = 5000
# Ledger entries one ``integrate`` call folds into the Merkle tree at most.
INTEGRATE_STEP = 5000


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def codec(self) -> AvroCodec:
        return AvroCodec()

    @cached_property
    def engine(self) -> PolicyEngine:
        return PolicyEngine.load_default()

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.settings.ledger_url, env={"POSTGRES_CONNECT_TIMEOUT": str(self.settings.connect_timeout)})

    @cached_property
    def sealer(self) -> LedgerSealer:
        return LedgerSealer.for_ledger(self.ledger, self.settings.master_key)

    @property
    def pseudonym_secret(self) -> bytes:
        return self.settings.pseudonym_secret.encode()

    @cached_property
    def wire_codec(self) -> AvroCodec:
        """What the gate reads from the wire: the standard single-object encoding only."""
        return AvroCodec(legacy_fingerprints=False)

    @cached_property
    def keyset(self) -> LiveKeySet:
        """The authority keys the gate trusts (XLEDGER_KEYSET), re-read when the file changes."""
        return live_keyset(self.settings, self.engine.directory.orgs)

    def pipeline(self) -> GatePipeline:
        return GatePipeline(self.engine, self.sealer, self.pseudonym_secret, self.keyset, self.wire_codec)

    def gate_worker(self, name: str = "gate-1") -> GateWorker:
        trust.require(self.settings, "gate run", self.engine.directory.orgs)
        return GateWorker(
            self.pipeline(),
            self.ledger,
            make_consumer(self.settings, self.settings.group_id, client_id=name),
            make_producer(self.settings, client_id=f"{name}-dlq"),
            name=name,
        )

    @cached_property
    def checkpoint_signer(self):
        from ledger.integrity import signer_from_key

        return signer_from_key(self.settings.checkpoint_key)

    def integrate(self, *, checkpoint: bool = False, rows=None):
        """Folds new ledger entries into the Merkle tree, signing a checkpoint every checkpoint_interval entries.
        A newly signed checkpoint wakes the cosignature collector (if one runs), which asks the witnesses.
        ``rows`` (``ledger.integrity.EventRows``) keeps the event rows read."""
        result = self.ledger.integrate(
            signer=self.checkpoint_signer, origin=self.settings.ledger_origin,
            sign_every=self.settings.checkpoint_interval, checkpoint=checkpoint, max_entries=INTEGRATE_STEP,
            rows=rows,
        )
        if result.checkpoints and "cosigning" in self.__dict__:
            self.cosigning.wake()
        return result

    @cached_property
    def cosigning(self):
        """Collects witness cosignatures for new checkpoints and publishes them to ledger.checkpoints
        (``services.cosigning``); off the delivery path, in its own thread (``start_cosigning``)."""
        from services.cosigning import CheckpointPublisher, CosignatureCollector, parse_witnesses

        publish = None
        if not self.settings.embedded:
            publish = CheckpointPublisher(make_producer(self.settings, client_id="checkpoint-publisher"))
        return CosignatureCollector(
            self.ledger, parse_witnesses(self.settings.witnesses), log_public_key=self.checkpoint_signer.public_key,
            publish=publish, timeout=self.settings.witness_timeout_ms / 1000,
            retry_every=self.settings.cosign_retry_ms / 1000,
        )

    def start_cosigning(self, stopping):
        """Runs the cosignature collector in a daemon thread until ``stopping`` is set."""
        return self.cosigning.start(stopping)

    def verify(self):
        """Checks the whole ledger against the checkpoint signer's public key (``ledger.verify``)."""
        return self.ledger.verify(self.checkpoint_signer.public_key, origin=self.settings.ledger_origin)

    @cached_property
    def read_models(self):
        from ledger.readmodels import ReadModels

        return ReadModels(self.ledger)

    def maintain(self, *, max_entries: int | None = None) -> bool:
        """Brings what is derived from the log up to date: the Merkle tree with its checkpoints, and
        the read models. With ``max_entries`` it does about that much of each and returns whether
        both are now current (the relay calls it so, between pages, so deliveries never wait long)."""
        from ledger.integrity import EventRows

        # The events the tree's steps read serve the read models too, where both need the same ones:
        # read once, not twice (5–9 % less CPU per maintained exchange, bench/README.md).
        rows = EventRows(limit=INTEGRATE_STEP)  # an unbounded maintain() holds no more than a bounded one
        integrated, tree_current = 0, False
        while max_entries is None or integrated < max_entries:
            step = self.integrate(rows=rows).appended
            integrated += step
            # integrate() stops short of its INTEGRATE_STEP only when the tree has caught up: no
            # further call to find nothing (a transaction with its lock and four reads, per page
            # the relay delivers when it keeps up with the gates).
            if step < INTEGRATE_STEP:
                tree_current = True
                break
        # The read models stop where the tree's kept rows end, and not where the events table ends:
        # the gates write while a step runs, and what they wrote since the tree's read would be read
        # here from the table and again by the tree's next step (in the end-to-end run the read models
        # stayed a step ahead, so that every page came from the table and the kept rows served none).
        # Only when the rows hold all the tree appended (no gap, no limit reached); else as before.
        through = rows.last if integrated and len(rows) == integrated else None
        projected = self.read_models.catch_up(max_entries=max_entries, rows=rows, through=through)
        return tree_current and (max_entries is None or projected < max_entries)

    def relay(self, *, maintain: bool = True) -> DeliveryRelay:
        """The delivery relay; with ``maintain`` it also keeps derived data current in its own thread
        (tests, the embedded demo), without it it only delivers: `relay run` leaves derived data to
        a maintainer process (``services.maintainer``)."""
        trust.require(self.settings, "relay run")
        producer = make_producer(self.settings, client_id="delivery-relay")
        if not maintain:
            return DeliveryRelay(self.ledger, producer, self.sealer, self.codec)
        return DeliveryRelay(self.ledger, producer, self.sealer, self.codec,
                             maintain=lambda: self.maintain(max_entries=MAINTAIN_STEP),
                             project=lambda page, events: self.read_models.project_next(page, events))

    def maintainer(self, **options):
        """The maintainer process `relay run` supervises (``services.maintainer``); not started yet."""
        from services.maintainer import MaintainerProcess

        return MaintainerProcess(self.settings, **options)

    def dev_publisher(self, org: str, role: str) -> Publisher:
        """A publisher signing with the development key of ``org`` (embedded demo and tests only)."""
        trust.require_development(self.settings, "signing with a development key")
        return Publisher(
            org, role, producer=make_producer(self.settings, client_id=f"agency-{org}"), key=dev_private_key(org),
            key_id=DEV_KEY_ID, codec=self.codec,
        )

    def dev_agency(self, org: str, role: str):
        """An agency service signing with the development key of ``org`` (embedded demo and tests only)."""
        from services.agencies import AgencyService

        return AgencyService.create(self.engine.directory, self.dev_publisher(org, role))

    def inbox(self, org: str) -> Inbox:
        inbox = Inbox(org, make_consumer(self.settings, None, client_id=f"inbox-{org}"), self.codec)
        inbox.assign_from_start()
        return inbox

    def create_topics(self, orgs: list[str] | None = None, request_partitions: int = 4) -> list[str]:
        """The request and dead-letter topics, plus an inbox and a receipts topic per authority, with the
        settings' replication factor and min.insync.replicas."""
        orgs = sorted(self.engine.directory.orgs) if orgs is None else orgs
        per_authority = [topics.inbox(o) for o in orgs] + [topics.receipts(o) for o in orgs]
        durability = {"replication_factor": self.settings.replication_factor,
                      "min_insync_replicas": self.settings.min_insync_replicas}
        admin = make_admin(self.settings)
        try:
            create_topics(admin, [topics.REQUESTS, topics.DEAD_LETTERS], request_partitions, **durability)
            create_topics(admin, per_authority, 1, **durability)
            # Cosigned checkpoints, keyed by origin: compaction keeps the newest per log for good.
            create_topics(admin, [topics.CHECKPOINTS], 1, configs={"cleanup.policy": "compact"}, **durability)
        finally:
            admin.close()
        return [topics.REQUESTS, topics.DEAD_LETTERS, *per_authority, topics.CHECKPOINTS]

    def close(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()

