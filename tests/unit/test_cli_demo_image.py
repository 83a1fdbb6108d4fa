"""``corral demo oci-image`` and ``demo download`` through the command line."""

from __future__ import annotations

import io
import json
import lzma
import tarfile
from pathlib import Path

import pytest

from corral.cli.main import main


def test_oci_image_subcommand_writes_an_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"#!/bin/sh\n"
        info = tarfile.TarInfo("bin/sh")
        info.size = len(data)
        info.mode = 0o555
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "base.txz").write_bytes(lzma.compress(raw.getvalue()))
    output = tmp_path / "image.tar"
    status = main(
        ["demo", "oci-image", "--input", str(tmp_path / "base.txz"), "--output", str(output),
         "--tag", "freebsd:14.3", "--arch", "amd64"]
    )  # fmt: skip
    assert status == 0
    with tarfile.open(output) as image:
        index = json.loads(image.extractfile("index.json").read())  # type: ignore[union-attr]
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "docker.io/library/freebsd:14.3"
    assert "ctr image import" in capsys.readouterr().out


def test_missing_input_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    status = main(["demo", "oci-image", "--input", str(tmp_path / "nope.txz")])
    assert status == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("corral: ")
    assert "corral demo download" in err
