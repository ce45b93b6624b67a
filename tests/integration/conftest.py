"""Shared fixtures for vessel's integration tests (run with Debian's python3-pytest)."""
import os
import pathlib
import subprocess

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def top():
    """The source tree."""
    return TOP


@pytest.fixture(scope="session")
def build_dir():
    """The release build directory, built by scripts/test before pytest runs
    (VESSEL_BUILD overrides it, e.g. to run the tests against a debug build)."""
    d = pathlib.Path(os.environ.get("VESSEL_BUILD", TOP / "build"))
    assert d.is_dir(), f"{d} does not exist: build first (meson setup build && ninja -C build)"
    return d


@pytest.fixture(scope="session")
def guest_assets():
    """Directory with the default guest: Image, initrd.img, fw_dynamic.bin, fw_jump.bin,
    kernel-version (see scripts/fetch-guest). Fetched once and cached."""
    out = subprocess.run(["bash", str(TOP / "scripts/fetch-guest")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    d = pathlib.Path(out.strip().splitlines()[-1])
    assert (d / "Image").is_file(), f"fetch-guest gave {d} without an Image"
    return d
