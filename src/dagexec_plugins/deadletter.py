"""The default dead-letter queue: kept beside the run's storage.

A storage that offers ``dead_letter_queue()`` (the SQLite storage does) keeps
the entries in its own file, so ``dagexec dlq`` sees them after the process
ends; otherwise they live in this process only.
"""

from __future__ import annotations

from dagexec_core import Config, DeadLetter, DeadLetterNotFoundError, DeadLetterQueue, Storage, hookimpl


class MemoryDeadLetterQueue:
    """Dead letters kept in this process (when the storage keeps nothing either)."""

    def __init__(self) -> None:
        self.entries: dict[str, DeadLetter] = {}

    def push(self, entry: DeadLetter) -> str:
        self.entries[entry.id] = entry
        return entry.id

    def list(self, run_id: str | None = None) -> list[DeadLetter]:
        return [e for e in self.entries.values() if run_id is None or e.run_id == run_id]

    def get(self, entry_id: str) -> DeadLetter:
        try:
            return self.entries[entry_id]
        except KeyError:
            raise DeadLetterNotFoundError(f"no dead letter {entry_id!r}") from None

    def remove(self, entry_id: str) -> None:
        self.entries.pop(entry_id, None)


@hookimpl(trylast=True)
def dagexec_dead_letter_queue(config: Config, storage: Storage) -> DeadLetterQueue:
    factory = getattr(storage, "dead_letter_queue", None)
    if callable(factory):
        queue: DeadLetterQueue = factory()
        return queue
    return MemoryDeadLetterQueue()
