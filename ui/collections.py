"""Which collections the servers offer (the API's models, the MCP tools' `collection`, the UI's picker), and the
settings of each.

One home for the list, so the API, the MCP server and the UI always agree: the collections of the store
(ingest/store.py's registry) plus the one the settings name, which is answerable before its first ingest (the
bundled corpus is ingested on first use).
"""

from __future__ import annotations

import difflib

from ingest.embed import get_embedder
from ingest.errors import UserError
from ingest.store import DEFAULT_COLLECTION, CollectionInfo, check_collection_name, list_collections
from rag.settings import Settings

DEFAULT = DEFAULT_COLLECTION


class UnknownCollection(UserError):
    """A request named a collection that does not exist (the API answers 404)."""


def collection_infos(settings: Settings) -> list[CollectionInfo]:
    """The store's collections, with their folder and counts."""
    return list_collections(settings.store_location, get_embedder(settings.embedder).name)


def collections(settings: Settings) -> list[str]:
    """The names of the collections these settings can answer from: the configured one first."""
    names = [c.name for c in collection_infos(settings)]
    own = settings.collection_name
    return [own] + sorted(n for n in names if n != own)


def collection_settings(settings: Settings, name: str | None) -> Settings:
    """The settings that answer from collection `name` (None or "" means the configured one)."""
    if not name or name == settings.collection_name:
        return settings
    known = collections(settings)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownCollection(f"unknown collection {name!r}: {hint}use one of: {', '.join(known)}")
    # Not the configured corpus: the named collection answers from the folder it mirrors.
    return Settings(**settings.model_dump(exclude={"corpus", "collection"}), collection=name)


def new_collection_settings(settings: Settings, name: str) -> Settings:
    """The settings of a collection made from the UI: named `name`, mirroring its own folder under the home
    (`home/collections/NAME`), everything else as `settings`. A name that is not allowed is a UserError."""
    name = check_collection_name((name or "").strip())
    return Settings(**settings.model_dump(exclude={"corpus", "collection"}), collection=name,
                    corpus=settings.home / "collections" / name)
