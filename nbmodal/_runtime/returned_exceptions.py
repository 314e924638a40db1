"""Modal's wrapper for the failures a map returns in place (``return_exceptions=True``).

Modal yields ``UserCodeException(Exception('ohno'))`` for a failed input, with the
original as ``.exc``. Here the wrapper is made an instance of the original's type
too (``isinstance(result, ValueError)`` holds, ``str()`` and the remote traceback are
the original's), so code written either way reads it.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


class UserCodeException(Exception):
    """A failure of the user's code, returned in place by ``.map(..., return_exceptions=True)``.

    ``exc`` is the exception the input raised. Example::

        for result in f.map(xs, return_exceptions=True):
            if isinstance(result, nbmodal.UserCodeException):
                print("failed:", result.exc)
    """

    exc: BaseException

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc

    def __repr__(self) -> str:
        return f"UserCodeException({self.exc!r})"


# Attributes built-in exception types keep outside ``args`` and ``__dict__``.
_BUILTIN_ATTRIBUTES: dict[type[BaseException], tuple[str, ...]] = {
    OSError: ("errno", "strerror", "filename", "filename2"),
    SyntaxError: ("filename", "lineno", "offset", "text", "end_lineno", "end_offset"),
    StopIteration: ("value",),
    ImportError: ("name", "path"),
}


@functools.lru_cache(maxsize=256)
def _wrapper_type(error_type: type[BaseException]) -> type[UserCodeException]:
    """A ``UserCodeException`` that is also an ``error_type`` (else the plain wrapper, when Python can't
    combine the two, e.g. a built-in type with an incompatible layout)."""
    if issubclass(error_type, UserCodeException):
        return error_type
    try:
        return type("UserCodeException", (UserCodeException, error_type), {
            "__module__": UserCodeException.__module__,
            "__qualname__": "UserCodeException",
            "__repr__": UserCodeException.__repr__,
            # the original's message, as its own type prints it
            "__str__": lambda self: str(self.exc),
            "__init__": UserCodeException.__init__,
        })
    except TypeError as exc:
        log.debug("UserCodeException can't also be a %s (%s); returning the plain wrapper", error_type, exc)
        return UserCodeException


def wrap_returned(error: BaseException) -> UserCodeException:
    """``error`` in Modal's wrapper: ``.exc`` is it; the wrapper carries its attributes, cause and
    traceback, and is an instance of its type where Python allows."""
    if isinstance(error, UserCodeException):
        return error
    wrapper_type = _wrapper_type(type(error))  # type: ignore[arg-type]  # classes hash by identity
    wrapper = wrapper_type.__new__(wrapper_type, *error.args)  # no user __init__: the error is built already
    wrapper.args = error.args
    wrapper.exc = error
    wrapper.__dict__.update(vars(error))
    for error_type, names in _BUILTIN_ATTRIBUTES.items():
        if isinstance(error, error_type):
            for name in names:  # kept in C slots, not in __dict__
                setattr(wrapper, name, getattr(error, name))
    wrapper.__cause__ = error.__cause__
    wrapper.__suppress_context__ = error.__suppress_context__
    return wrapper.with_traceback(error.__traceback__)
