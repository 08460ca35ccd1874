"""The lab's files: written whole, and with their mode from the moment they exist."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from patronus.lab.files import write_atomic


@pytest.mark.parametrize(("umask", "mode"), [(0o000, 0o600), (0o077, 0o644), (0o022, 0o600)])
def test_the_file_has_its_mode_whatever_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    target = tmp_path / "lab" / "kubeconfig"
    previous = os.umask(umask)
    try:
        write_atomic(target, "token: secret\n", mode)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_text() == "token: secret\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["kubeconfig"]  # no temporary file left


def test_the_temporary_file_is_created_with_the_mode_not_chmodded_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[int] = []
    real_open = os.open

    def recording_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        created.append(mode)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", recording_open)
    write_atomic(tmp_path / "dashboard-token", "t\n", 0o600)
    assert created == [0o600]


def test_a_stale_temporary_file_does_not_stop_the_write(tmp_path: Path) -> None:
    (tmp_path / "ready.tmp").write_text("half")
    write_atomic(tmp_path / "ready", "{}", 0o600)
    assert (tmp_path / "ready").read_text() == "{}"
    assert not (tmp_path / "ready.tmp").exists()
