"""The documentation runs: every ```python block of every page, and the site build.

Each page's python blocks run in order, as one script, in a fresh interpreter
(cwd = the repository, ``PROBPIPE_BACKEND`` unset, ``PREFECT_API_URL`` set to
this test session's Prefect API so pages do not each start a server). The
script is the page itself with everything but its python blocks blanked out,
so a traceback's line numbers are the page's. A snippet line inside a block
(``--8<-- "examples/x.py"``) becomes one line that runs that file, so its
tracebacks point into the file.

A block the test cannot run cheaply (it needs a ``prefect server start``, a
``ray start --head`` or a remote cluster) is marked on the line before its
fence with ``<!-- docs-test: skip (reason) -->``. Each marked block is
reported as a skipped test with its reason, so ``pytest -ra`` lists them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGE_TIMEOUT = 240  # seconds per page

SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>.+)\)\s*-->")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
SNIPPET = re.compile(r'^(?P<indent>\s*)--8<--\s+"(?P<path>[^"]+)"\s*$')
MANGLED = re.compile(r"^\s*--8\s*<")
RUNNABLE = {"python", "py"}


@dataclass
class Block:
    page: str  # relative to docs/
    line: int  # 1-based line of the first code line
    lines: list[str]  # the code, dedented to the fence
    skip: str | None  # the reason, when marked


def extract_blocks(path: Path, root: Path = DOCS) -> list[Block]:
    """The fenced ```python blocks of a markdown page, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = _id(path, root)
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = i + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                break
            end += 1
        if opening["lang"] in RUNNABLE:
            before = next((x for x in reversed(lines[:i]) if x.strip()), "")
            marked = SKIP.search(before)
            body = [x[len(indent) :] if x.startswith(indent) else x for x in lines[i + 1 : end]]
            blocks.append(Block(page, i + 2, body, marked["reason"] if marked else None))
        i = end + 1
    return blocks


def page_script(path: Path, root: Path = DOCS) -> tuple[str, int]:
    """The page as a script: its runnable blocks at their own line numbers."""
    n_lines = len(path.read_text(encoding="utf-8").splitlines())
    script = [""] * n_lines
    ran = 0
    for block in extract_blocks(path, root):
        if block.skip is not None:
            continue
        ran += 1
        for k, line in enumerate(block.lines):
            snippet = SNIPPET.match(line)
            assert snippet or not MANGLED.match(line), (
                f"{block.page}:{block.line + k}: a snippet line that is not "
                '`--8<-- "path"`; if `ruff format` rewrote it, put the block between '
                "<!-- fmt: off --> and <!-- fmt: on -->"
            )
            if snippet:
                target = REPO / snippet["path"]
                assert target.is_file(), f"{block.page}: snippet {snippet['path']} not found"
                line = (
                    f"{snippet['indent']}exec(compile(open({str(target)!r}).read(), "
                    f"{str(target)!r}, 'exec'))"
                )
            script[block.line - 1 + k] = line
    return "\n".join(script) + "\n", ran


def _id(path: Path, root: Path = DOCS) -> str:
    """A page's name: relative to docs/, or to the repository for README.md."""
    return path.relative_to(root if path.is_relative_to(root) else REPO).as_posix()


def _shown(page: str) -> str:
    return page if page == "README.md" else f"docs/{page}"


PAGES = sorted(DOCS.rglob("*.md"))
CHECKED = [*PAGES, REPO / "README.md"]  # the README's example runs too
RUN_PAGES = [p for p in CHECKED if any(b.skip is None for b in extract_blocks(p))]
SKIPPED = [b for p in CHECKED for b in extract_blocks(p) if b.skip is not None]


@pytest.fixture(scope="module")
def prefect_api_url():
    """This test session's Prefect API, started by one tiny call on the shared backend."""
    import probpipe as pp
    from probpipe.engines import prefect as prefect_engine
    from probpipe.testing import shared_backend

    wf = pp.WorkflowFunction(
        float, backend=shared_backend("prefect"), n_broadcast_samples=2, seed=1
    )
    wf(pp.Normal(0, 1))
    url = prefect_engine.api_url()
    assert url, "the shared Prefect backend did not report an API URL"
    return url


def fake_install(root: Path, dist: str, version: str, entry_points: dict[str, str]) -> Path:
    """An installed-looking dist-info (entry points only) under ``root``, for PYTHONPATH."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[probpipe]\n{lines}\n")
    return root


def page_env(page: str, api_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROBPIPE_BACKEND", "RAY_ADDRESS")}
    env["PREFECT_API_URL"] = api_url
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if page == "plugins.md":
        # What `pip install -e examples/probpipe-pool` would do: the package on the
        # path and its entry point in the `probpipe` group.
        site = fake_install(tmp_path / "site", "probpipe-pool", "0.1.0", {"pool": "probpipe_pool"})
        paths = [str(REPO / "examples" / "probpipe-pool" / "src"), str(site), *paths]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.dask
@pytest.mark.ray
@pytest.mark.parametrize("path", RUN_PAGES, ids=_id)
def test_page_code_runs(path, prefect_api_url, tmp_path):
    script, n_blocks = page_script(path)
    page = _id(path)
    file = tmp_path / (page.replace("/", "__") + ".py")
    file.write_text(script)
    proc = subprocess.run(
        [sys.executable, str(file)],
        cwd=REPO,
        env=page_env(page, prefect_api_url, tmp_path),
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{_shown(page)}: its {n_blocks} python block(s) failed (exit {proc.returncode}); "
            f"line numbers in {file.name} are the page's.\n"
            f"STDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-8000:]}",
            pytrace=False,
        )


@pytest.mark.parametrize("block", SKIPPED, ids=lambda b: f"{b.page}:{b.line}")
def test_marked_block_is_skipped(block):
    pytest.skip(f"{_shown(block.page)} line {block.line}: {block.skip}")


def test_skips_are_rare_and_explained():
    total = sum(len(extract_blocks(p)) for p in CHECKED)
    assert total >= 40, f"only {total} python blocks in the docs?"
    assert all(len(b.skip) > 15 for b in SKIPPED), "say why each block is skipped"
    assert len(SKIPPED) <= total // 5, f"{len(SKIPPED)} of {total} blocks are skipped"


def test_extraction_keeps_page_line_numbers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        textwrap.dedent(
            """\
            # Title

            ```python
            x = 1
            ```

            <!-- docs-test: skip (needs a running Ray head) -->
            ```python
            raise SystemExit("must not run")
            ```

            !!! note
                ```python
                y = x + 1
                ```

            ```bash
            echo not python
            ```
            """
        )
    )
    blocks = extract_blocks(page, tmp_path)
    script, ran = page_script(page, tmp_path)
    assert [(b.line, b.lines, b.skip) for b in blocks] == [
        (4, ["x = 1"], None),
        (9, ['raise SystemExit("must not run")'], "needs a running Ray head"),
        (14, ["y = x + 1"], None),
    ]
    assert ran == 2
    assert script.splitlines()[3] == "x = 1" and script.splitlines()[13] == "y = x + 1"
    assert "SystemExit" not in script


def test_site_builds_with_no_warnings(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's end-of-life banner
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert not re.search(r"^\s*WARNING\b", output, flags=re.MULTILINE), output[-6000:]
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "backends" / "prefect-ray" / "index.html").exists()


def test_api_reference_covers_every_public_name():
    import probpipe

    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: probpipe\.(\w+)\s*$", api, flags=re.MULTILINE))
    missing = sorted(set(probpipe.__all__) - documented - {"__version__"})
    assert not missing, f"docs/api.md lacks {missing}"
    assert "::: probpipe.testing.BackendConformance" in api


def test_every_page_is_in_the_nav():
    import yaml

    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    assert set(pages(config["nav"])) == {_id(p) for p in PAGES}


def _png() -> bytes:
    """A valid 1x1 PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def test_benchmark_page_shows_the_harness_results(tmp_path):
    """With results (as `probpipe bench` writes them) the page shows tables and plots."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "W1.png").write_bytes(_png())
    (results / "results.md").write_text(
        textwrap.dedent(
            """\
            # probpipe benchmark results

            `probpipe bench --quick` started 2026-01-01T00:00:00+00:00, took 0.4 min.

            ## Machine

            | item | value |
            |---|---|
            | CPU | Test CPU, 2 logical cores |

            ## W1: per-row overhead

            | runner | median s |
            |---|---|
            | `ray` | 0.027 |

            ![W1](W1.png)

            ## W2: CPU-bound rows

            ![W2](W2.png)
            """
        )
    )
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PROBPIPE_BENCH_RESULTS": str(results)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    page = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert (site / "benchmarks" / "W1.png").read_bytes() == _png()
    assert 'src="W1.png"' in page and "Test CPU, 2 logical cores" in page
    assert "<code>W2.png</code> was not written by this run" in page
    assert "No benchmark results" not in page
