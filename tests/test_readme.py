"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import dmsc.capi
from dmsc.config import load_config

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(blocks) == 3, "the README has the Mesh, dmsc_fast and ProxyEngine examples"
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["count"] == 2
    assert getattr(namespace["v2"], "port", None) == 9002
    assert namespace["found"] is not None
    assert namespace["host"] in {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}
    assert namespace["info"] == {**namespace["info"], "rust": True, "cython": True}  # type: ignore[dict-item]
    assert "requests_total" in str(namespace["text"])
    assert str(namespace["address"]).startswith("127.0.0.1:")
    assert "dmsc_cluster_upstream_requests_total" in str(namespace["metrics"])


def test_c_example_compiles_and_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```c\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "the README has a C example"
    source = tmp_path / "example.c"
    source.write_text(blocks[0])
    exe = tmp_path / "example"
    flags = f"{dmsc.capi.cflags()} {dmsc.capi.libs()}".split()
    subprocess.run(
        ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", str(source), "-o", str(exe), *flags],
        check=True,
    )
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_yaml_example_is_a_valid_configuration(tmp_path: Path) -> None:
    [block] = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
    path = tmp_path / "mesh.yaml"
    path.write_text(block)
    config = load_config(path)
    assert config.mesh.load_balancing == "least_requests"
    assert config.mesh.health_check_expected_statuses == ((200, 400),)
