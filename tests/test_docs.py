"""One truth per figure: results live in the README's results table, and the docs link to files
that exist.

A config's docstring gives its command and points to that table; a figure copied into it would
drift from the table, so none may be there. Every config has a row in the table.
"""

import importlib
import pathlib
import re

import pytest

from autoenc.config import available_configs

REPO = pathlib.Path(__file__).resolve().parent.parent
# A measured figure: decibels, minutes, seconds, gigabytes, an SSIM or PSNR, a "best epoch".
FIGURE = re.compile(r"\d\s*(dB|minutes?|min|s|GB)\b|(SSIM|PSNR) \d|best epoch \d")
LINK = re.compile(r"\]\(([\w./-]+)(#[^)]*)?\)")  # a Markdown link to a relative path


def results_table() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `python launch.py")]


@pytest.mark.parametrize("name", available_configs())
def test_config_docstring_points_to_the_results_table_and_quotes_no_figure(name):
    doc = importlib.import_module(f"configs.{name}").__doc__
    assert f"python launch.py --config={name}" in doc
    assert "README.md" in doc
    assert not FIGURE.search(doc), FIGURE.search(doc).group(0)


@pytest.mark.parametrize("name", available_configs())
def test_every_config_has_a_row_in_the_results_table(name):
    assert any(f"--config={name}`" in row or f"--config={name} " in row for row in results_table())


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(str(p.relative_to(REPO)) for p in REPO.glob("docs/*.md"))]
)
def test_relative_links_name_files_that_exist(page):
    path = REPO / page
    for target, _ in LINK.findall(path.read_text()):
        assert (path.parent / target).exists(), f"{page} links to missing {target}"
