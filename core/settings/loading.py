"""From the raw key/value map Pulumi hands the program to `Settings`, or one line naming the key."""

from __future__ import annotations

import json
from typing import Any, Iterable

from pydantic import ValidationError

from core.settings.base import NAMESPACE, SettingsError
from core.settings.model import Settings

# Keys whose values are secrets: an error about them never shows the value, and they belong in
# `pulumi config set --secret` (the stack file then holds only ciphertext).
SECRET_KEYS = ("sshPrivateKey", "masterPassword", "sipTlsKey")
# Taken as they are, never decoded as JSON (a PEM block, a password that parses as a number).
TEXT_KEYS = (*SECRET_KEYS, "sipTlsCertificate")
# Keys earlier versions read, with what to do now (better than "unknown key").
RETIRED_KEYS = {
    "signalwireToken": "no longer used: FreeSWITCH comes from the openkazoo repository (sources.freeswitch); "
    "remove it with `pulumi config rm kazoo:signalwireToken`",
}


def _decode(value: Any) -> Any:
    """Pulumi hands config values over as strings; objects, lists, numbers and booleans as JSON."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    key = f"{NAMESPACE}:{loc}" if loc else NAMESPACE
    kind = first["type"]
    secret = str(first["loc"][0]) in SECRET_KEYS if first["loc"] else False
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "is required"
    elif kind == "enum":
        expected = first.get("ctx", {}).get("expected", "")
        message = f"{first['input']!r} is not one of {expected}" if not secret else f"is not one of {expected}"
    elif kind.startswith("string_type"):
        message = "must be a string" + ("" if secret else f" (got {_short(first['input'])})")
    else:
        message = first["msg"].removeprefix("Value error, ")
    more = len(err.errors()) - 1
    return f"{key}: {message}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_settings(raw: dict[str, Any]) -> Settings:
    """Parse `{"kazoo:layout": "single", ...}` (other namespaces are ignored) into Settings."""
    data = {}
    for key, value in sorted(raw.items()):
        namespace, _, name = key.partition(":")
        if namespace != NAMESPACE:
            continue
        if name in RETIRED_KEYS:
            raise SettingsError(f"{key}: {RETIRED_KEYS[name]}")
        # Secrets stay strings: a password that happens to parse as JSON is still that password.
        data[name] = value if name in TEXT_KEYS else _decode(value)
    try:
        return Settings.model_validate(data)
    except SettingsError:
        raise
    except ValidationError as err:
        # A SettingsError raised inside a validator arrives wrapped: keep its own line.
        first = err.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, SettingsError):
            raise SettingsError(str(cause)) from None
        raise SettingsError(_format_error(err)) from None
    except (RecursionError, TypeError, OverflowError) as err:  # pathological input: still one line
        raise SettingsError(f"{NAMESPACE}: the stack configuration cannot be read ({type(err).__name__})") from None


def plain_text_secrets(raw: dict[str, Any], secret_keys: Iterable[str]) -> list[str]:
    """Secret keys given in clear text in the stack file (not `secure:`), for a warning."""
    secret = set(secret_keys)
    return [f"{NAMESPACE}:{name}" for name in SECRET_KEYS if f"{NAMESPACE}:{name}" in raw and f"{NAMESPACE}:{name}" not in secret]
