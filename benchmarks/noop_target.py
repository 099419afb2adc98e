"""A singer-sdk target whose sink does nothing, at the SDK's default settings: the baseline."""

from __future__ import annotations

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink


class NoopSink(BatchSink):
    """Drops every batch."""

    def process_batch(self, context: dict) -> None:
        """Nothing to do."""


class NoopTarget(Target):
    """Reads, validates and batches like any SDK target; writes nowhere."""

    name = "target-noop"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = NoopSink


if __name__ == "__main__":
    NoopTarget.cli()
