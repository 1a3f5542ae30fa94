import matplotlib.pyplot as plt
import pytest

import xaibias as xb


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"XAIBIAS_HEADLESS": "1"}, True),
        ({"XAIBIAS_HEADLESS": "0", "CI": "true"}, False),  # the variable wins
        ({"CI": "true"}, True),
        ({}, True),  # a plain script (pytest) has no frontend
    ],
)
def test_is_headless_reads_environment_not_fast(monkeypatch, env, expected):
    for k in ("XAIBIAS_HEADLESS", "CI"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for fast in (True, False):  # FAST plays no part
        monkeypatch.setattr(xb.config, "FAST", fast)
        assert xb.widgets.is_headless() is expected


def test_is_headless_false_in_a_kernel_with_a_frontend(monkeypatch):
    import IPython

    class Shell:
        kernel = object()

    for k in ("XAIBIAS_HEADLESS", "CI"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    assert xb.widgets.is_headless() is False


def test_headless_explorer_calls_once_with_defaults():
    calls = []

    def draw(k, method):
        calls.append((k, method))
        fig, ax = plt.subplots()
        ax.set_title(f"{method} k={k}")
        return fig

    fig = xb.widgets.explorer(draw, k=(2, 8), method=["spray", "gebi"], headless=True)
    assert calls == [(5, "spray")] and fig.axes[0].get_title() == "spray k=5"
    plt.close("all")
