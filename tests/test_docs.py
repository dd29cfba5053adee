"""Every Python snippet of the README and docs/ runs as written (in a folder holding what its
text says it reads), and no page repeats a code block of another."""

import glob
import os
import re
import shutil

import pytest
from conftest import ROOT

PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(f"{ROOT}/docs/*.md"))]
FENCE = re.compile(r"```(\w*)[^\n]*\n(.*?)```", re.S)


def blocks(language: str) -> list[tuple[str, str]]:
    with_code = []
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as f:
            with_code += [(page, m.group(2)) for m in FENCE.finditer(f.read()) if m.group(1) == language]
    return with_code


SNIPPETS = blocks("python")


def test_the_pages_have_python_snippets_and_no_code_block_appears_twice():
    assert {page for page, _ in SNIPPETS} >= {"README.md", "docs/outputs.md"}
    seen = {}
    for page, code in blocks("bash") + SNIPPETS:
        assert code not in seen, f"{page} repeats a code block of {seen[code]}:\n{code}"
        seen[code] = page


@pytest.fixture
def finished_run_hm(finished_sweep, tmp_path, monkeypatch):
    """A finished run (seeds 5 and 6 x two betas) in ./runs/hm, which docs/outputs.md's snippet reads."""
    shutil.copytree(finished_sweep, tmp_path / "runs" / "hm")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("page,code", SNIPPETS, ids=[f"{p}:{i}" for i, (p, _) in enumerate(SNIPPETS)])
def test_python_snippet_runs_as_written(page, code, request, tmp_path, monkeypatch, capsys):
    if "runs/hm" in code:
        request.getfixturevalue("finished_run_hm")
    else:
        monkeypatch.chdir(tmp_path)
    exec(compile(code, page, "exec"), {"__name__": "__snippet__"})
    printed = capsys.readouterr().out
    if page == "README.md":  # one training call's metrics, all finite
        assert "'critic_loss'" in printed and "nan" not in printed
    if page == "docs/outputs.md":  # the members' seeds; five actions of Hopper's three numbers
        assert "[5, 6, 5, 6] (5, 3)" in printed
