"""Which collections the servers offer (the API's models, the MCP tools' `collection`), and the settings of each.

One home for the list, so the API and the MCP server always agree. Today there is one collection, "default": the
configured corpus and store. When the store holds several collections, `collections()` reads them and
`collection_settings()` returns the settings that answer from one; nothing else needs to change.
"""

from __future__ import annotations

import difflib

from ingest.errors import UserError
from rag.settings import Settings

DEFAULT = "default"


class UnknownCollection(UserError):
    """A request named a collection that does not exist (the API answers 404)."""


def collections(settings: Settings) -> list[str]:
    """The names of the collections these settings can answer from."""
    return [DEFAULT]


def collection_settings(settings: Settings, name: str | None) -> Settings:
    """The settings that answer from collection `name` (None or "" means the default one)."""
    name = name or DEFAULT
    known = collections(settings)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownCollection(f"unknown collection {name!r}: {hint}use one of: {', '.join(known)}")
    return settings
