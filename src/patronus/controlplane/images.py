"""The project's images as OCI archives (``scripts/build-images.sh``), and their import into a node.

No registry is reachable here, so a node's containerd gets every image it runs from these archives,
under the names a user's ``docker build -t patronus-operator:latest .`` gives (``patronus-operator:latest``
is ``docker.io/library/patronus-operator:latest`` to the kubelet). Pods use them with
``imagePullPolicy: IfNotPresent`` or ``Never``.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from patronus.controlplane.binaries import ControlPlaneError, run_build_script
from patronus.controlplane.nodeconfig import PAUSE_IMAGE

OPERATOR_IMAGE = "docker.io/library/patronus-operator:latest"
AGENT_IMAGE = "docker.io/library/patronus-agent:latest"
# archive file -> the name the image gets in containerd
ARCHIVES = {
    "patronus-operator.tar": OPERATOR_IMAGE,
    "patronus-agent.tar": AGENT_IMAGE,
    "pause.tar": PAUSE_IMAGE,
}


@dataclass(frozen=True, slots=True)
class ImageSet:
    """A directory of image archives, as the build script writes it."""

    directory: Path

    @classmethod
    def locate(cls, *, build: bool = True) -> ImageSet:
        """``$PATRONUS_IMAGES_DIR``, else build (or reuse) the images from the checkout."""
        configured = os.environ.get("PATRONUS_IMAGES_DIR")
        images = cls(
            Path(configured)
            if configured
            else run_build_script(
                "build-images.sh", build=build, alternative="set PATRONUS_IMAGES_DIR to the images' directory"
            )
        )
        if missing := [name for name in ARCHIVES if not (images.directory / name).is_file()]:
            raise ControlPlaneError(f"{images.directory} lacks {', '.join(missing)}")
        return images

    def sizes(self) -> dict[str, str]:
        """Each image's size as the build measured it: uncompressed, and its archive's."""
        lines = (self.directory / "sizes.txt").read_text().splitlines()
        return dict(line.split(" ", 1) for line in lines if line.strip())

    def import_into(self, ctr: list[str]) -> None:
        """Import every archive with ``ctr`` (its address and namespace given) under its name."""
        for archive, name in ARCHIVES.items():
            import_archive(ctr, self.directory / archive, name)


def import_archive(ctr: list[str], archive: Path, name: str) -> None:
    """One single-image OCI archive into containerd, named ``name`` (repository:tag).

    An OCI archive names its image by tag alone, so ``ctr`` imports it by digest under the repository
    (``--base-name``, ``--digests``), and the digest reference is then tagged.
    """
    repository, _, _ = name.rpartition(":")
    imported = _ctr(
        ctr,
        "images",
        "import",
        "--base-name",
        repository,
        "--digests",
        str(archive),
        what=f"importing {archive}",
    )
    match = re.search(rf"{re.escape(repository)}@sha256:[0-9a-f]{{64}}", imported)
    if match is None:
        raise ControlPlaneError(f"importing {archive} gave no image of {repository}: {imported.strip()}")
    _ctr(ctr, "images", "tag", "--force", match.group(0), name, what=f"tagging {name}")


def _ctr(ctr: list[str], *args: str, what: str) -> str:
    result = subprocess.run([*ctr, *args], capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise ControlPlaneError(f"{what} failed: {result.stderr.strip()}")
    return result.stdout
