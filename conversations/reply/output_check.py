"""The moderation of a reply while it streams, at sentence boundaries, in the background.

The deltas go to the visitor as they come (the first token is never delayed); each completed
sentence is queued, and one background thread checks what is queued as one batch (one request
for all the sentences completed while the previous batch was checked). A flagged batch sets
`flagged`: the reply's loop stops the provider stream at its next event and replaces the text
with an honest notice in the final `message`. `finish` checks the rest (the last sentence,
unterminated) and waits for every batch before the reply is stored.
"""

import re
import threading

from conversations.reply.screening import ScreenResult, screen_text
from supportbot.llm import ProviderConfig

# A sentence ends at . ! ? … followed by white space, at a CJK full stop, ! or ?, or at a line
# break.
_SENTENCE_END = re.compile(r"[.!?…](?=\s)|[\u3002\uff01\uff1f]|\n")
MAX_BATCH_CHARS = 8_000


class OutputGuard:
    """Checks a reply's sentences as they complete; `flagged` once one of them is flagged."""

    def __init__(self, config: ProviderConfig | None, *, fail_closed: bool) -> None:
        self.config = config
        self.fail_closed = fail_closed
        self.result: ScreenResult | None = None  # the first blocking result, or the last error
        self._text = ""
        self._checked_upto = 0  # characters of _text queued for checking
        self._pending: list[str] = []
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.config is not None

    @property
    def flagged(self) -> bool:
        return self.result is not None and self.result.blocked

    def reset(self) -> None:
        """Forget the text (a new request's text is added from its start)."""
        with self._cond:
            self._text, self._checked_upto = "", 0

    def add(self, piece: str) -> None:
        """Add streamed text; queue the sentences it completes."""
        if self.config is None or self.flagged:
            return
        self._text += piece
        last_end = None
        for match in _SENTENCE_END.finditer(self._text, self._checked_upto):
            last_end = match.end()
        if last_end is not None:
            self._queue(self._text[self._checked_upto : last_end])
            self._checked_upto = last_end

    def finish(self, timeout: float) -> bool:
        """Queue the rest of the text and wait (at most `timeout` s) for every check; True when
        the reply may stand (not flagged, and not unchecked with fail closed)."""
        if self.config is None:
            return True
        rest = self._text[self._checked_upto :]
        self._checked_upto = len(self._text)
        if rest.strip():
            self._queue(rest)
        with self._cond:
            self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)
            if self._pending or self._busy:  # the checks did not end in time
                self._note(ScreenResult(error="timeout", fail_closed=self.fail_closed))
            self._closed = True
            self._cond.notify_all()
        return not self.flagged

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()

    def _queue(self, sentence: str) -> None:
        if not sentence.strip():
            return
        with self._cond:
            self._pending.append(sentence)
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="moderation-output", daemon=True
                )
                self._thread.start()

    def _batch(self) -> list[str] | None:
        """The next batch to check (None: closed). Called with the lock held."""
        self._cond.wait_for(lambda: self._pending or self._closed)
        if not self._pending:
            return None
        batch: list[str] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0]) <= MAX_BATCH_CHARS):
            size += len(self._pending[0])
            batch.append(self._pending.pop(0))
        self._busy = True
        return batch

    def _run(self) -> None:
        assert self.config is not None
        while True:
            with self._cond:
                batch = self._batch()
            if batch is None:
                return
            result = screen_text(self.config, ["".join(batch)], fail_closed=self.fail_closed)
            with self._cond:
                self._note(result)
                self._busy = False
                if self.flagged:
                    self._pending.clear()
                self._cond.notify_all()

    def _note(self, result: ScreenResult) -> None:
        keep = self.result is not None and self.result.blocked
        if not keep and (result.blocked or (result.error and self.result is None)):
            self.result = result
