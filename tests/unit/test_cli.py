from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from patronus import __version__
from patronus.cli.main import cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_crds_prints_four_definitions() -> None:
    result = CliRunner().invoke(cli, ["crds"])
    assert result.exit_code == 0
    documents = list(yaml.safe_load_all(result.output))
    assert [doc["spec"]["names"]["kind"] for doc in documents] == ["Site", "Path", "Policy", "Mesh"]


def test_crds_out_writes_one_file_per_kind(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["crds", "--out", str(tmp_path / "crds")])
    assert result.exit_code == 0
    names = sorted(p.name for p in (tmp_path / "crds").iterdir())
    assert names == [
        "sdwan.patronus.dev_meshes.yaml",
        "sdwan.patronus.dev_paths.yaml",
        "sdwan.patronus.dev_policies.yaml",
        "sdwan.patronus.dev_sites.yaml",
    ]
