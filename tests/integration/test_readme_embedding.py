"""The README's embedding example works when copied into a script (issue 8 item 10).

The block is taken from README.md as it is; only its port (0: a free one) and worker count
change, so the test can run anywhere. Workers are started with ``spawn``, which imports the
script again in each worker: without the ``if __name__ == "__main__":`` guard each worker
would start a cluster of its own.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.integration.conftest import REPO, ClusterProcess, get

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8")]})
    await send({"type": "http.response.body", "body": b"embedded"})
"""


def readme_embedding_block() -> str:
    """The first ```python block of README.md that calls asynccluster.run(...)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S):
        if "asynccluster.run(" in block:
            return str(block)
    raise AssertionError("README.md has no ```python block calling asynccluster.run(...)")


def test_readme_block_is_guarded() -> None:
    block = readme_embedding_block()
    assert 'if __name__ == "__main__":' in block
    guarded = block.split('if __name__ == "__main__":', 1)[1]
    assert "asynccluster.run(" in guarded  # the call itself is under the guard


def test_readme_embedding_block_runs_as_a_script(tmp_path: Path) -> None:
    block = readme_embedding_block()
    for original, replacement in (("port=8080", "port=0"), ("workers=4", "workers=1")):
        assert original in block, f"the README block changed: update this test ({original!r})"
        block = block.replace(original, replacement)
    package = tmp_path / "myproject"  # the module the block names: myproject.main:app
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(APP)
    script = tmp_path / "serve.py"
    script.write_text(block)
    cluster = ClusterProcess([], command=[sys.executable, str(script)])
    try:
        cluster.wait_ready()
        status, _, body = get(cluster.port, "/")
        assert (status, body) == (200, b"embedded")
        assert cluster.stop() == 0
        assert "Traceback" not in cluster.output
    finally:
        cluster.kill_group()


def readme_async_block() -> str:
    """The README's ```python block that drives a Cluster from async code."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S):
        if "asynccluster.Cluster(" in block:
            return str(block)
    raise AssertionError("README.md has no ```python block using asynccluster.Cluster(...)")


def test_readme_async_block_runs_as_a_script(tmp_path: Path) -> None:
    """Copied as it is (the newcomer trial found the old one restarted the cluster in every
    worker): it reloads, scales and stops, and exits 0."""
    import subprocess

    block = readme_async_block()
    for original, replacement in (("workers=4)", "workers=1, port=0)"), ("scale(6)", "scale(2)")):
        assert original in block, f"the README block changed: update this test ({original!r})"
        block = block.replace(original, replacement)
    package = tmp_path / "myproject"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(APP)
    script = tmp_path / "drive.py"
    script.write_text(block)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{REPO}"},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "ReloadResult(ok=True" in output and "online" in output, output
    assert "Traceback" not in output, output
