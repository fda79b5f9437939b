"""The two kinds of error the project raises; only the CLI and the UI turn them into text for people.

`UserError`: the user asked for something wrong (empty question, missing folder, unknown model id); the message
says what to change. `SetupError`: the machine is missing something or a backend failed (model package missing,
model file corrupt, Ollama host down, store not writable); the message says what to run.
"""


class RagError(Exception):
    """Base of every error meant for a person."""


class UserError(RagError, ValueError):
    pass


class SetupError(RagError, RuntimeError):
    pass


class UnreadableFile(ValueError):
    """A corpus file that cannot be read as an article (binary, not UTF-8, corrupt, encrypted, too large, scanned);
    ingest skips it and says why in one line of its report. Not a RagError: the rest of the folder goes on."""


class OtherFolder(UserError):
    """A collection was asked to mirror a folder other than the one it mirrors; nothing was changed."""
