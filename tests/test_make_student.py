"""tools/make_student.py: solutions hidden behind stubs, every exercise complete, every check able to fail."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))

spec = importlib.util.spec_from_file_location("make_student", ROOT / "tools" / "make_student.py")
ms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ms)


def code_lines(src: str) -> set[str]:
    """Non-empty lines of code, stripped; comments and function signatures (the stub keeps those) left out."""
    return {s for s in (line.strip() for line in src.splitlines()) if s and not s.startswith(("#", "def "))}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert ms.main(["--out", str(out), *map(str, NOTEBOOKS)]) == 0
    return {p.name: (json.loads(p.read_text()), json.loads((out / p.name).read_text())) for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_exercises(path, built):
    nb, _ = built[path.name]
    # the exercise cells, read from the JSON without the tool's helpers
    tagged = [i for i, c in enumerate(nb["cells"]) if "exercise" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) >= 2, f"{path.name} has fewer than two exercises"
    assert [ex for ex, _, _ in ms.exercises(nb, path.name)] == tagged
    assert all(set(nb["cells"][i + 1]["metadata"]["tags"]) >= {"solution"} for i in tagged)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_solution_survives_and_every_exercise_has_its_stub(path, built):
    nb, student = built[path.name]
    assert len(student["cells"]) == len(nb["cells"])
    for ex, sol, chk in ms.exercises(nb, path.name):
        original, stubbed = ms.source(nb["cells"][sol]), ms.source(student["cells"][sol])
        assert "solution" in ms.tags(student["cells"][sol])
        leaked = code_lines(original) & code_lines(stubbed)
        assert not leaked, f"{path.name} cell {sol}: solution lines left in the student version: {leaked}"
        assert ms.STUB_MARK in stubbed
        title, hint = ms.title_and_hint(ms.source(nb["cells"][ex]))
        assert title != "Exercise" and hint, f"{path.name} cell {ex}: an exercise needs a heading and a 'Hint:' line"
        assert stubbed.startswith(f"# {title}\n") and "# Hint: " in stubbed
        comments = " ".join(line.lstrip("# ").strip() for line in stubbed.splitlines() if line.startswith("#"))
        assert f"Hint: {hint}" in comments
        names, _ = ms.assigned_names(original)
        # the stub runs and leaves every assigned name as Ellipsis (the check then says "not answered yet")
        space: dict = {}
        exec(compile(stubbed, f"{path.name}:{sol}", "exec"), space)
        for n in names:
            assert n in space, f"{path.name} cell {sol}: the stub does not define {n}"
            if not callable(space[n]):
                assert space[n] is Ellipsis
        # the exercise and check cells reach the student unchanged
        for j in (ex, chk):
            assert ms.source(student["cells"][j]) == ms.source(nb["cells"][j])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_check_has_its_solution(path, built):
    nb, _ = built[path.name]
    for _, sol, chk in ms.exercises(nb, path.name):
        check_src = ms.source(nb["cells"][chk])
        assert re.search(r"teaching\.check_\w+\(", check_src), f"{path.name} cell {chk}: a check calls xaibias.teaching"
        names, _ = ms.assigned_names(ms.source(nb["cells"][sol]))
        used = {n.id for n in ast.walk(ast.parse(check_src)) if isinstance(n, ast.Name)}
        assert used & set(names), f"{path.name} cell {chk}: the check uses none of the solution's names {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_version_has_no_outputs(path, built):
    _, student = built[path.name]
    for cell in student["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_every_check_called_in_a_notebook_has_a_wrong_answer_test():
    called = set()
    for p in NOTEBOOKS:
        nb = json.loads(p.read_text())
        for _, _, chk in ms.exercises(nb, p.name):
            called |= set(re.findall(r"teaching\.(check_\w+)\(", ms.source(nb["cells"][chk])))
    tested = set()
    for name in ("test_teaching.py", "test_teaching_real.py"):   # 08's checks live in teaching.real_photos
        text = (ROOT / "tests" / name).read_text()
        tested |= set(re.findall(r"assert_wrong\(\s*teaching\.(check_\w+)", text))
        # `check = teaching.check_x` followed by `assert_wrong(check, ...)` in the same test
        for test in text.split("\ndef test_"):
            for alias, fn in re.findall(r"(\w+) = teaching\.(check_\w+)\n", test):
                if re.search(rf"assert_wrong\(\s*{alias}\b", test):
                    tested.add(fn)
    assert called, "no notebook calls a check"
    assert called <= tested, f"checks without a wrong-answer test: {sorted(called - tested)}"


# --------------------------------------------------------------------------------------------------
# the tool itself, on small hand-made notebooks

def nb_of(*cells):
    return {"cells": [{"cell_type": t, "metadata": {"tags": tg}, "source": s,
                       **({"outputs": [{"output_type": "stream", "text": "x"}], "execution_count": 3} if t == "code" else {})}
                      for t, tg, s in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


EXERCISE = ("markdown", ["exercise"], "### Exercise 9.1 · Sum it\nAdd the numbers.\n\n*Hint:* use `sum`.")


def test_stub_keeps_names_and_signatures_and_hides_the_code():
    sol = ("import math\nwith open('f') as fh:\n    total, (a, b) = 1, (2, 3)\nfor i in range(3):\n    acc = i\n"
           "def helper(x, y=2, *, z=None):\n    '''Add.'''\n    return x + y\n")
    out = ms.student_version(nb_of(EXERCISE, ("code", ["solution"], sol), ("code", ["check"], "teaching.check_x(total)")))
    stubbed = ms.source(out["cells"][1])
    assert stubbed.startswith("# Exercise 9.1 · Sum it\n# Hint: use `sum`.\n")
    for n in ("fh", "total", "a", "b", "i", "acc"):
        assert f"\n{n} = ...  {ms.STUB_MARK}" in stubbed
    assert "def helper(x, y=2, *, z=None):" in stubbed and "return x + y" not in stubbed
    space: dict = {}
    exec(stubbed, space)
    with pytest.raises(NotImplementedError, match="helper"):
        space["helper"](1)
    assert all(c.get("outputs", []) == [] for c in out["cells"] if c["cell_type"] == "code")


def test_stub_without_names_raises_not_implemented():
    out = ms.student_version(nb_of(EXERCISE, ("code", ["solution"], "print(1 + 2)"), ("code", ["check"], "pass")))
    with pytest.raises(NotImplementedError, match="Sum it"):
        exec(ms.source(out["cells"][1]), {})


@pytest.mark.parametrize("cells, message", [
    ((EXERCISE, ("code", ["check"], "x")), "cell 1 must be a code cell tagged 'solution'"),
    ((EXERCISE, ("code", ["solution"], "x = 1"), ("code", [], "y")), "cell 2 must be a code cell tagged 'check'"),
    ((EXERCISE, ("code", ["solution"], "x = 1")), "not followed by a solution and a check"),
    ((("code", ["solution"], "x = 1"),), "does not follow an 'exercise'"),
    ((("code", ["exercise"], "x = 1"), ("code", ["solution"], "x"), ("code", ["check"], "x")), "not markdown"),
])
def test_broken_layouts_are_named(cells, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ms.exercises(nb_of(*cells), "demo.ipynb")
