"""The host a run is recorded under: the kernel's name, or the one an operator gives."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from atomicscan.collect import host_identity


def test_kernel_name_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATOMICSCAN_HOSTNAME", raising=False)
    assert host_identity()["hostname"] == socket.gethostname()


def test_a_pod_names_its_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    monkeypatch.setenv("ATOMICSCAN_HOSTNAME", "node-7")
    monkeypatch.setenv("ATOMICSCAN_MACHINE_ID_FILE", str(machine_id))
    assert host_identity() == {"hostname": "node-7",
                               "machine_id": "0123456789abcdef0123456789abcdef"}


@pytest.mark.parametrize("name", ["evil\x1b[2Jname", "line\nbreak"])
def test_unprintable_names_are_not_taken(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("ATOMICSCAN_HOSTNAME", name)
    assert host_identity()["hostname"] == socket.gethostname()


def test_a_missing_machine_id_file_is_empty(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("ATOMICSCAN_MACHINE_ID_FILE", str(tmp_path / "nothing"))
    assert host_identity()["machine_id"] == ""
