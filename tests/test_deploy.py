"""The systemd units in deploy/: systemd-analyze verify finds nothing wrong with them, and the commands they run
are credcheck commands that the example configuration completes."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from credcheck.cli import main

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = sorted(path.name for path in DEPLOY.iterdir() if path.suffix in (".service", ".timer"))
#: Where the units expect credcheck (a virtual environment in /opt/credcheck); the tests run this environment's.
INSTALLED = "/opt/credcheck/bin/credcheck"


def exec_start(unit: str) -> list[str]:
    """The command line of a unit's ExecStart=."""
    (line,) = [line for line in (DEPLOY / unit).read_text().splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.fixture
def systemd_analyze() -> str:
    """systemd-analyze (Debian's systemd package), which CI installs (.ci/run): skipped only outside CI."""
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: CI installs the systemd package (.ci/run)")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return found


def test_the_units_are_there() -> None:
    """A unit for serve, and a timer with its service for mirror --update."""
    assert UNITS == ["credcheck-mirror.service", "credcheck-mirror.timer", "credcheck-serve.service"]


def test_systemd_analyze_verify(systemd_analyze: str, tmp_path: Path) -> None:
    """systemd-analyze verify accepts every unit without a warning (an unknown key or a bad value is only a
    warning to it, so its output must be empty too), with credcheck where this environment has it."""
    here = str(Path(sys.executable).with_name("credcheck"))
    assert os.access(here, os.X_OK), f"{here}: the credcheck command of this environment"
    for unit in UNITS:
        (tmp_path / unit).write_text((DEPLOY / unit).read_text().replace(INSTALLED, here))
    done = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *(str(tmp_path / unit) for unit in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "credcheck" in line or str(tmp_path) in line]
    assert done.returncode == 0 and ours == [], done.stdout + done.stderr


@pytest.mark.parametrize("unit", ["credcheck-serve.service", "credcheck-mirror.service"])
def test_each_unit_runs_a_complete_command(
    unit: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The unit's command, with the example config file its CREDCHECK_CONFIG names, is a whole credcheck
    command: every key of the file known, every required option given."""
    text = (DEPLOY / unit).read_text()
    assert "Environment=CREDCHECK_CONFIG=/etc/credcheck/credcheck.toml" in text.splitlines()
    command = exec_start(unit)
    assert command[0] == INSTALLED
    monkeypatch.setenv("CREDCHECK_CONFIG", str(DEPLOY / "credcheck.toml"))
    assert main([*command[1:], "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "# config file" in printed and "/var/lib/credcheck/sha1.store" in printed


@pytest.mark.parametrize("unit", ["credcheck-serve.service", "credcheck-mirror.service"])
def test_hardening(unit: str) -> None:
    """Each service runs as the credcheck user, sees the file system read-only but for its state directory, and
    can gain no privilege, device or address family it does not need."""
    settings = dict(
        line.split("=", 1) for line in (DEPLOY / unit).read_text().splitlines() if "=" in line and line[0] != "#"
    )
    want = {
        "User": "credcheck",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/credcheck",
        "StateDirectory": "credcheck",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter": "@system-service",
    }
    assert {key: settings.get(key) for key in want} == want
    assert "RemoveIPC" not in settings  # it would take serve's rate-limit table out of /dev/shm when mirror ends
