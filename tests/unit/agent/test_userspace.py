"""Which wireguard-go the agent starts: the configured one, else the module build, else Debian's."""

from __future__ import annotations

from pathlib import Path

import pytest

from patronus.agent.dataplane.commands import RecordingRunner
from patronus.agent.dataplane.userspace import FALLBACK, WireGuardGoNotFound, wireguard_go_binary
from patronus.agent.dataplane.wireguard import WireGuardInterface


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_module_build_is_preferred_to_the_one_on_path(tmp_path: Path) -> None:
    built = executable(tmp_path / "wireguard-go-0123" / "wireguard-go")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "wireguard-go").symlink_to(built)
    assert wireguard_go_binary({"PATRONUS_CACHE": str(tmp_path)}) == str(built)


def test_without_a_build_debians_on_path_is_used(tmp_path: Path) -> None:
    assert wireguard_go_binary({"PATRONUS_CACHE": str(tmp_path)}) == FALLBACK
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "wireguard-go").symlink_to(tmp_path / "gone")  # a dangling link: not a build
    assert wireguard_go_binary({"PATRONUS_CACHE": str(tmp_path)}) == FALLBACK


def test_an_explicit_binary_wins_and_must_be_an_absolute_executable(tmp_path: Path) -> None:
    mine = executable(tmp_path / "mine" / "wireguard-go")
    executable(tmp_path / "bin" / "wireguard-go")
    environ = {"PATRONUS_CACHE": str(tmp_path), "PATRONUS_WIREGUARD_GO": str(mine)}
    assert wireguard_go_binary(environ) == str(mine)
    for bad in ("wireguard-go", str(tmp_path / "missing"), str(tmp_path)):
        with pytest.raises(WireGuardGoNotFound):
            wireguard_go_binary({"PATRONUS_WIREGUARD_GO": bad})


def test_an_interface_without_the_kernel_module_starts_the_chosen_binary() -> None:
    def respond(args: list[str]) -> tuple[int, str, str]:
        if args[:3] == ["ip", "link", "show"]:
            return 1, "", "Device does not exist"
        if args[:3] == ["ip", "link", "add"]:
            return 2, "", "Error: Unknown device type."
        if args[:2] == ["wg", "show"]:
            return 0, "(none)\t(none)\t0\toff\n", ""
        return 0, "", ""

    runner = RecordingRunner(respond)
    wg = WireGuardInterface(
        "wg-fiber", listen_port=51820, private_key="yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
        runner=runner, userspace_binary="/opt/wg/wireguard-go",
    )  # fmt: skip
    wg.ensure()
    assert wg.userspace
    started = [c for c in runner.commands if "/opt/wg/wireguard-go" in c]
    assert started == [
        ["env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", "/opt/wg/wireguard-go", "wg-fiber"]
    ]
