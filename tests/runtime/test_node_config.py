"""cluster.toml: ``ClusterConfig.dump`` writes what ``ClusterConfig.load`` reads, [protocol]
included, and ``load`` names the file when a setting is wrong."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import pytest

from vrref.core.replica import Config
from vrref.runtime.node import PROTOCOL_TABLE_FIELDS, ClusterConfig, ReplicaAddress


def five_replicas(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(
        replicas=tuple(
            ReplicaAddress(host="127.0.0.1", peer_port=6400 + i, dns_port=6300 + i)
            for i in range(5)
        ),
        key=bytes(range(32)),
        zone_file=tmp_path / "zones" / "example.com.zone",
        origin="example.com.",
        tsig_key_file=tmp_path / "update.key",
        tick_ms=20,
        read_mode="linearizable",
        protocol=Config(
            replica_count=5,
            heartbeat_ticks=3,
            primary_timeout_ticks=11,
            view_change_resend_ticks=4,
            view_change_stalled_ticks=17,
            recovery_resend_ticks=5,
            state_transfer_resend_ticks=6,
            pipeline_max=77,
            prepare_entries_max=9,
            checkpoint_ops=13,
        ),
    )


def load_text(tmp_path: Path, text: str) -> ClusterConfig:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return ClusterConfig.load(path)


def test_every_protocol_setting_but_replica_count_is_in_the_table() -> None:
    assert set(PROTOCOL_TABLE_FIELDS) == {f.name for f in fields(Config)} - {"replica_count"}


def test_load_of_dump_is_the_same_config_with_non_default_protocol_settings(
    tmp_path: Path,
) -> None:
    config = five_replicas(tmp_path)
    defaults = Config(replica_count=5)
    # Every setting differs from its default, so a dropped one would show.
    assert all(
        getattr(config.protocol, name) != getattr(defaults, name) for name in PROTOCOL_TABLE_FIELDS
    )
    text = config.dump()
    assert "[protocol]" in text and "replica_count" not in text
    assert load_text(tmp_path, text) == config


def test_a_config_whose_protocol_disagrees_with_its_replicas_is_refused(tmp_path: Path) -> None:
    config = five_replicas(tmp_path)
    with pytest.raises(ValueError, match="replica_count is 3 but there are 5 replicas"):
        replace(config, protocol=Config(replica_count=3))


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ("replica_count = 5", "must not set replica_count"),
        ('heartbeat_ticks = "2"', "heartbeat_ticks must be an integer"),
        ("heartbeat_ticks = 2.5", "heartbeat_ticks must be an integer"),
        ("pipeline_max = true", "pipeline_max must be an integer"),
        ("no_such_setting = 1", "unknown settings"),
        ("prepare_entries_max = 0", "prepare_entries_max must be at least 1"),
    ],
)
def test_a_bad_protocol_table_is_a_value_error_naming_the_file(
    tmp_path: Path, table: str, complaint: str
) -> None:
    text = five_replicas(tmp_path).dump()
    start = text.index("[protocol]")
    end = text.index("[[replica]]")
    bad = text[:start] + "[protocol]\n" + table + "\n\n" + text[end:]
    with pytest.raises(ValueError, match=complaint) as caught:
        load_text(tmp_path, bad)
    assert str(tmp_path / "cluster.toml") in str(caught.value)


def test_a_missing_protocol_table_means_the_defaults(tmp_path: Path) -> None:
    text = five_replicas(tmp_path).dump()
    start = text.index("[protocol]")
    end = text.index("[[replica]]")
    loaded = load_text(tmp_path, text[:start] + text[end:])
    assert loaded.protocol == Config(replica_count=5)
