"""What both sides check about secrets: their names, their keys (environment variable names), and which
values are long enough to be masked in output.

The client checks before anything travels (a clear error in the cell); the agent checks again, since
any client may call it.

    >>> check_secret_name("hf")
    >>> check_env_keys({"HF_TOKEN": "hf_abc"}, where="Secret.from_dict")
    >>> masked_values({"A": "short", "B": "long-enough"})
    ['long-enough']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from nbmodal_wire.names import check_name

# A value shorter than this is not masked in output: masking "1" or "true" would garble everything.
MIN_MASKED_LENGTH = 6
MASK = "***"
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_KEY_RULE = "letters, digits and '_', not starting with a digit"


class SecretRuleError(ValueError):
    """A secret name, key or value that is not allowed."""


def check_secret_name(name: str) -> None:
    """Refuse a secret name that is not nbmodal_wire.names.NAME_RULE."""
    try:
        check_name("secret", name)
    except ValueError as exc:
        raise SecretRuleError(str(exc)) from None


def check_env_keys(values: Mapping[str, str], *, where: str) -> None:
    """Every key must be an environment variable name and every value a string without NUL bytes;
    ``where`` names the thing at fault in the error."""
    for key, value in values.items():
        if not isinstance(key, str) or not ENV_KEY.fullmatch(key):
            raise SecretRuleError(f"{where}: {key!r} is not a valid environment variable name ({ENV_KEY_RULE})")
        if not isinstance(value, str):
            raise SecretRuleError(f"{where}: the value of {key} must be a string, not {type(value).__name__}")
        if "\x00" in value:
            raise SecretRuleError(f"{where}: the value of {key} contains a NUL byte, which an environment "
                                  f"variable can't hold")


def masked_values(env: Mapping[str, str] | Iterable[str]) -> list[str]:
    """The values output is masked for (``MIN_MASKED_LENGTH`` characters or more), longest first."""
    values = env.values() if isinstance(env, Mapping) else env
    return sorted({v for v in values if len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True)
