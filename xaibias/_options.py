"""Unknown options are errors: one check and one message for every keyword the package forwards.

:func:`attribute() <xaibias.explain.attribute>` hands its extra keywords to the chosen method, the
corrections of :mod:`xaibias.mitigation` take an ``options`` dict, and the estimators
(:class:`~xaibias.analysis.CAV`, :class:`~xaibias.analysis.SpRAy`, :class:`~xaibias.analysis.GEBI`)
take their settings as keywords. A misspelt or misplaced option (``n_steps`` for ``steps``, a
``composite`` given to a gradient method) must never be dropped in silence, so each of them goes
through :func:`reject_unknown`, which raises :class:`UnknownOptionError` naming the option, the
receiver and the options the receiver takes. A leaf module: it imports nothing from xaibias.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["UnknownOptionError", "reject_unknown", "keyword_names", "checked_init"]


class UnknownOptionError(TypeError, ValueError):
    """An option that the receiving method, correction or estimator does not take.

    A :class:`TypeError`, as Python raises for an unexpected keyword argument; also a
    :class:`ValueError`, so code that caught the ValueError the corrections raised before keeps
    working.
    """


def reject_unknown(given: Iterable[str], accepted: Iterable[str], where: str) -> None:
    """Raise :class:`UnknownOptionError` when ``given`` holds a name that ``accepted`` lacks.

    Parameters
    ----------
    given : iterable of str
        The option names that were passed (a dict's keys will do).
    accepted : iterable of str
        The option names the receiver takes, in the order they are listed in the message.
    where : str
        The receiver as the message names it, e.g. ``"attribute(method='integrated_gradients')"``,
        ``"correction 'rrr'"`` or ``"SpRAy()"``.

    Raises
    ------
    UnknownOptionError
        With a message such as ``attribute(method='integrated_gradients') does not take the option
        'n_steps' (did you mean 'steps'?); it takes: steps, baseline, internal_batch_size``.
    """
    accepted = tuple(accepted)
    unknown = [name for name in given if name not in accepted]
    if not unknown:
        return
    names = ", ".join(repr(name) for name in unknown)
    guesses = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), accepted, n=1, cutoff=0.6)
        if close:
            guesses.append(repr(close[0]) if len(unknown) == 1 else f"{close[0]!r} for {name!r}")
    hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
    takes = f"it takes: {', '.join(accepted)}" if accepted else "it takes no options"
    plural = "s" if len(unknown) > 1 else ""
    raise UnknownOptionError(f"{where} does not take the option{plural} {names}{hint}; {takes}")


def keyword_names(fn: Callable[..., Any], skip: int = 0) -> tuple[str, ...] | None:
    """The names ``fn`` accepts as keywords after its first ``skip`` parameters.

    Returns ``None`` when ``fn`` takes ``**kwargs`` (any name is accepted; the function itself is
    then responsible for rejecting what it does not use).
    """
    params = list(inspect.signature(fn).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in kinds)


def checked_init(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate an ``__init__`` so an unknown keyword raises :class:`UnknownOptionError`.

    Python's own error for an unexpected keyword does not list the parameters; this one does,
    naming the class as ``Name()``. The signature stays visible through ``functools.wraps``
    (``inspect.signature`` follows ``__wrapped__``), so scikit-learn's ``get_params`` and ``clone``
    keep working.
    """
    names = keyword_names(init, skip=1) or ()

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        reject_unknown(kwargs, names, f"{type(self).__name__}()")
        init(self, *args, **kwargs)

    return wrapper
