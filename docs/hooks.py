"""mkdocs hooks: the latest benchmark results, and tidier API docstrings.

Benchmarks. ``probpipe bench`` writes ``benchmarks/results/results.md`` and one
PNG per workload. The benchmarks page holds the marker ``<!-- bench-results -->``;
this hook replaces it with that file (title dropped, headings demoted, image
links pointed at copies of the PNGs that the hook adds to the site). Without
results it puts in a note saying how to produce them, so the site builds
either way and picks the results up on the next build.

``PROBPIPE_BENCH_RESULTS=DIR`` shows the results of a run written elsewhere
(``probpipe bench --out DIR``).

Docstrings. probpipe's docstrings use Sphinx roles (``:class:`X```); the
rendered HTML would show the role names, so they are dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[1]
# Where `probpipe bench` wrote its results (its default --out); override with the
# environment variable to show another run's.
RESULTS = Path(os.environ.get("PROBPIPE_BENCH_RESULTS") or REPO / "benchmarks" / "results")
MARKER = "<!-- bench-results -->"
SITE_FOLDER = "benchmarks"  # the PNGs are served at benchmarks/<name>.png

NO_RESULTS = """\
!!! note "No benchmark results in this checkout yet"

    `benchmarks/results/results.md` does not exist. Run the harness, then build
    the docs again; this section then shows its tables and plots:

    ```bash
    probpipe bench --quick        # a fast look (a few minutes)
    probpipe bench                # the full run (about 20 minutes on 2 cores)
    make docs
    ```
"""

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:[\w]+\.)*([\w]+)</code>")


def on_files(files, config):
    """Add the harness's plots to the site."""
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"{SITE_FOLDER}/{png.name}", abs_src_path=str(png)))
    return files


def results_markdown() -> str:
    """benchmarks/results/results.md, fitted into the benchmarks page."""
    path = RESULTS / "results.md"
    if not path.exists():
        return NO_RESULTS
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]  # the page has its own title
    out = []
    for line in lines:
        if line.startswith("#"):
            line = "#" + line  # one level down, under the page's own section
        out.append(_IMAGE.sub(_image_link, line))
    return "\n".join(out) + "\n"


def _image_link(match: re.Match) -> str:
    alt, target = match.groups()
    name = Path(target).name
    if not (RESULTS / name).exists():
        return f"*(plot `{name}` was not written by this run)*"
    return f"![{alt}]({SITE_FOLDER}/{name})"


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, results_markdown())
    return markdown


def on_page_content(html, page, config, files):
    if page.file.src_uri == "api.md":
        html = _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", html))
    return html
