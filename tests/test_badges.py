"""tools/badges.py: the README's FAST minutes from an nbval run's JUnit XML."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("badges", ROOT / "tools" / "badges.py")
badges = importlib.util.module_from_spec(spec)
spec.loader.exec_module(badges)


def test_junit_minutes_sum_cells_and_skip_failed_notebooks(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        '<testcase classname="notebooks.00_data_and_bias.ipynb" name="Cell 0" time="30.0" />'
        '<testcase classname="notebooks.00_data_and_bias.ipynb" name="Cell 1" time="60.0" />'
        '<testcase classname="notebooks.05_measuring_bias.ipynb" name="Cell 0" time="12.0">'
        '<failure message="boom" /></testcase>'
        '<testcase classname="tests.test_config" name="test_seed" time="1.0" />'
        "</testsuite></testsuites>"
    )
    # 00: 90 s -> 1.5 min; 05 failed, so its time says nothing about a full run; unit tests are ignored
    assert badges.junit_minutes(xml) == {"00_data_and_bias": 1.5}


def test_every_notebook_has_a_goal():
    names = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb")}
    assert names <= set(badges.GOALS), f"notebooks without a goal line in tools/badges.py: {sorted(names - set(badges.GOALS))}"


def test_junit_minutes_and_the_table_know_lettered_notebooks(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        '<testcase classname="notebooks.07a_reveal_and_localise.ipynb" name="Cell 0" time="60.0" />'
        '<testcase classname="notebooks.07b_revise_and_reevaluate.ipynb" name="Cell 3" time="30.0" />'
        "</testsuite></testsuites>"
    )
    assert badges.junit_minutes(xml) == {"07a_reveal_and_localise": 1.0, "07b_revise_and_reevaluate": 0.5}
    # the README table lists every notebook the glob finds, lettered ones included, in file-name order
    rows = [line.split("](")[0].lstrip("| [") for line in badges.table().splitlines()[2:]]
    assert rows == sorted(p.stem for p in (ROOT / "notebooks").glob(badges.NOTEBOOK_GLOB))
