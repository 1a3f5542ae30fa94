"""ipywidgets explorers that also work headless.

Computation happens in plain notebook cells; an explorer only lets a reader browse the results.
:func:`explorer` wraps a drawing function ``fn(**choices)``: with a live Jupyter frontend it shows
dropdowns/sliders and redraws on change; without one (FAST/CI runs, nbval, ``make notebooks``,
``XAIBIAS_HEADLESS=1``) it calls ``fn`` once with the default values and shows that figure, so an
executed notebook always contains the default view.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["explorer", "is_headless", "default_value"]


def is_headless() -> bool:
    """True when no interactive frontend is expected: ``XAIBIAS_HEADLESS=1``, FAST mode or CI."""
    from . import config

    flag = os.environ.get("XAIBIAS_HEADLESS", "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return False
    return bool(config.FAST or os.environ.get("CI"))


def default_value(choice: Any) -> Any:
    """The value a headless explorer uses: the first option of a list, the middle of a
    ``(min, max[, step])`` range, the value itself otherwise (bool, str, number)."""
    if isinstance(choice, list):
        if not choice:
            raise ValueError("an explorer choice list must not be empty")
        first = choice[0]
        return first[1] if isinstance(first, tuple) and len(first) == 2 else first
    if isinstance(choice, dict):
        if not choice:
            raise ValueError("an explorer choice dict must not be empty")
        return next(iter(choice.values()))
    if isinstance(choice, tuple) and 2 <= len(choice) <= 3 and all(isinstance(v, (int, float)) for v in choice):
        lo, hi = choice[0], choice[1]
        mid = (lo + hi) / 2
        return int(round(mid)) if all(isinstance(v, int) for v in choice) else mid
    return choice


def explorer(fn: Callable[..., Any], defaults: dict[str, Any] | None = None, headless: bool | None = None,
             **choices: Any) -> Any:
    """Explore ``fn`` over ``choices`` (ipywidgets ``interact`` abbreviations: a list gives a
    dropdown, ``(min, max, step)`` a slider, a bool a checkbox).

    ``defaults`` overrides the value used for the first/headless view. Returns ``fn``'s result
    for the default view when headless, the ``ipywidgets.interactive`` object otherwise.
    """
    defaults = dict(defaults or {})
    unknown = set(defaults) - set(choices)
    if unknown:
        raise ValueError(f"defaults given for unknown choices {sorted(unknown)}; choices are {sorted(choices)}")
    values = {k: defaults.get(k, default_value(v)) for k, v in choices.items()}
    if headless if headless is not None else is_headless():
        import matplotlib.pyplot as plt

        result = fn(**values)
        plt.show()
        return result
    import ipywidgets as w
    from IPython.display import display

    controls: dict[str, Any] = {}
    for k, v in choices.items():
        if isinstance(v, (list, dict)):
            controls[k] = w.Dropdown(options=v, value=values[k], description=k)
        elif isinstance(v, bool):
            controls[k] = w.Checkbox(value=bool(values[k]), description=k)
        elif isinstance(v, tuple):
            slider = w.IntSlider if all(isinstance(x, int) for x in v) else w.FloatSlider
            step = v[2] if len(v) == 3 else (1 if slider is w.IntSlider else (v[1] - v[0]) / 20)
            controls[k] = slider(min=v[0], max=v[1], step=step, value=values[k], description=k)
        else:
            controls[k] = w.fixed(v)
    ui = w.interactive(fn, **controls)
    display(ui)
    return ui
