"""docs/writing-a-scanner.md, part 1, run command by command exactly as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from helpers import podman, podman_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-scanner.md"


def _tutorial_blocks() -> list[str]:
    part_one = DOC.read_text().split("## 2.")[0]
    return re.findall(r"```sh\n(.*?)```", part_one, flags=re.DOTALL)


def test_definition_file_tutorial_runs_as_written(tmp_path: Path) -> None:
    blocks = _tutorial_blocks()
    assert len(blocks) >= 4, "the tutorial lost its commands"
    env = podman_env()
    env.update({
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        "ATOMICSCAN_CONFIG_DIR": str(tmp_path / "atomicscan.d"),
        "ATOMICSCAN_STATE_DIR": str(tmp_path / "state"),
        "ATOMICSCAN_RESULTS_DIR": str(tmp_path / "results"),
    })
    work = tmp_path / "work"
    work.mkdir()
    try:
        for block in blocks:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=600, check=False)
            assert done.returncode == 0, f"tutorial step failed:\n{block}\n{done.stderr}"
        (result,) = json.loads((work / "hello.json").read_text())["results"]
        assert result["successful"] is True
        assert result["custom"]["has_os_release"] is True
        assert result["custom"]["etc_files"] > 10
        assert "hello" in done.stdout or "True" in done.stdout
    finally:
        podman("rmi", "--force", "localhost/hello-scanner:latest", check=False)
