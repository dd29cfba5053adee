"""Every Python snippet of the README and docs/ runs as written (in a folder holding what its
text says it reads), and no page repeats a code block of another."""

import glob
import os
import re

import pytest
from conftest import ROOT, run_main

import train_offline

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
def finished_run_hm(minari_root, tmp_path, monkeypatch):
    """A finished two-seed run in ./runs/hm, which docs/outputs.md's snippet reads."""
    monkeypatch.chdir(tmp_path)
    run_main(train_offline, f"--config={ROOT}/configs/iql_mujoco.py:smoke", "--dataset=test/hopper/random-v0",
             "--workdir=runs/hm", "--num_seeds=2", "--config.hidden_dims=(16,16)", "--config.tensorboard=False")
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
    if page == "docs/outputs.md":  # seeds 0 and 1; five actions of Hopper's three numbers
        assert "[0, 1] (5, 3)" in printed
