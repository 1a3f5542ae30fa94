"""Write the student versions of the notebooks: every solution replaced by a stub, no outputs.

Usage: python tools/make_student.py [--out build/student] [notebooks/00_x.ipynb ...]

An exercise is three cells in a row: a markdown cell tagged ``exercise`` (its first heading is the
title, a line starting with ``Hint:`` or ``*Hint:*`` the hint), a code cell tagged ``solution``
and a code cell tagged ``check`` (which calls ``xaibias.teaching``). In the student version the
solution cell keeps its tag ``solution`` but its source becomes a stub: the title and hint as
comments, and ``name = ...  # your code here`` for every name the solution assigns at the top level
(so the check cell, which receives ``...``, prints "not answered yet" and the notebook still runs
to the end), or ``raise NotImplementedError`` where the solution assigns nothing. Functions the
solution defines keep their signature and raise ``NotImplementedError``. Every output and
execution count is removed.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB_MARK = "# your code here"


def tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def exercises(nb: dict, name: str = "notebook") -> list[tuple[int, int, int]]:
    """(exercise, solution, check) cell indices of every exercise; ValueError when the layout is broken."""
    cells = nb["cells"]
    found = []
    for i, cell in enumerate(cells):
        t = tags(cell)
        if "exercise" in t:
            if cell["cell_type"] != "markdown":
                raise ValueError(f"{name}: cell {i} is tagged 'exercise' but is a {cell['cell_type']} cell, not markdown")
            sol = cells[i + 1] if i + 1 < len(cells) else None
            if sol is not None and ("solution" not in tags(sol) or sol["cell_type"] != "code"):
                raise ValueError(f"{name}: exercise at cell {i}: cell {i + 1} must be a code cell tagged 'solution'")
            if i + 2 >= len(cells):
                raise ValueError(f"{name}: exercise at cell {i} is not followed by a solution and a check cell")
            chk = cells[i + 2]
            if "check" not in tags(chk) or chk["cell_type"] != "code":
                raise ValueError(f"{name}: exercise at cell {i}: cell {i + 2} must be a code cell tagged 'check'")
            found.append((i, i + 1, i + 2))
    paired = {j for ex in found for j in ex[1:]}
    for i, cell in enumerate(cells):
        t = tags(cell)
        if ("solution" in t or "check" in t) and i not in paired:
            raise ValueError(f"{name}: cell {i} is tagged {t} but does not follow an 'exercise' markdown cell")
    return found


def title_and_hint(markdown: str) -> tuple[str, str | None]:
    """The exercise's first heading (without #) and its hint line (without the 'Hint:' label)."""
    title, hint = "Exercise", None
    for line in markdown.splitlines():
        s = line.strip()
        if s.startswith("#") and title == "Exercise":
            title = s.lstrip("#").strip()
        m = re.match(r"^[*_]*hint[:.]?[*_]*\s*[:.]?\s*(.*)$", s, flags=re.IGNORECASE)
        if m and hint is None:
            hint = m.group(1).strip().strip("*_ ")
    return title, hint


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [n for elt in node.elts for n in _targets(elt)]
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    return []


def assigned_names(code: str) -> tuple[list[str], list[ast.FunctionDef]]:
    """Names the solution assigns outside functions (in order, no repeats), and its top-level functions."""
    tree = ast.parse(code)
    names: list[str] = []
    functions: list[ast.FunctionDef] = []

    def visit(stmts):
        for st in stmts:
            if isinstance(st, ast.FunctionDef):
                functions.append(st)
                names.append(st.name)
                continue
            if isinstance(st, ast.ClassDef):
                names.append(st.name)
                continue
            if isinstance(st, ast.Assign):
                for t in st.targets:
                    names.extend(_targets(t))
            elif isinstance(st, (ast.AnnAssign, ast.AugAssign)):
                names.extend(_targets(st.target))
            elif isinstance(st, (ast.For, ast.AsyncFor)):
                names.extend(_targets(st.target))
            elif isinstance(st, (ast.With, ast.AsyncWith)):
                for item in st.items:
                    if item.optional_vars is not None:
                        names.extend(_targets(item.optional_vars))
            for field in ("body", "orelse", "finalbody"):
                if isinstance(getattr(st, field, None), list) and not isinstance(st, ast.FunctionDef):
                    visit(getattr(st, field))
            if isinstance(st, ast.Try):
                for h in st.handlers:
                    visit(h.body)

    visit(tree.body)
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen, functions


def stub(solution: str, title: str, hint: str | None) -> str:
    """The student's cell for one solution."""
    names, functions = assigned_names(solution)
    lines = [f"# {title}" if title.lower().startswith("exercise") else f"# Exercise: {title}"]
    if hint:
        lines += textwrap.wrap(f"Hint: {hint}", width=100, initial_indent="# ", subsequent_indent="#   ",
                               break_on_hyphens=False, break_long_words=False)
    fn_names = {f.name for f in functions}
    for f in functions:
        lines.append(f"def {f.name}({ast.unparse(f.args)}):")
        doc = ast.get_docstring(f)
        if doc:
            lines.append(f"    {json.dumps(doc)}")
        lines.append(f"    raise NotImplementedError({json.dumps(f'write {f.name} for: ' + title)})  {STUB_MARK}")
    for n in names:
        if n not in fn_names:
            lines.append(f"{n} = ...  {STUB_MARK}")
    if not names:
        lines.append(f"raise NotImplementedError({json.dumps('Exercise: ' + title)})  {STUB_MARK}")
    return "\n".join(lines)


def student_version(nb: dict, name: str = "notebook") -> dict:
    """A copy of ``nb`` with every solution stubbed and every output removed."""
    out = json.loads(json.dumps(nb))
    for ex, sol, _ in exercises(out, name):
        title, hint = title_and_hint(source(out["cells"][ex]))
        out["cells"][sol]["source"] = stub(source(out["cells"][sol]), title, hint)
    for cell in out["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "student")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        nb = json.loads(p.read_text(encoding="utf-8"))
        student = student_version(nb, p.name)
        (args.out / p.name).write_text(json.dumps(student, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{p.name}: {len(exercises(nb, p.name))} exercise(s) -> {args.out / p.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
