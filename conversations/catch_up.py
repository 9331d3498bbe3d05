"""What a (re)connecting socket is sent, for the visitor's and the agent's websockets alike:
`welcome` with the messages after the client's `last_seq` (the newest CATCH_UP_MAX_MESSAGES of
them, marked `truncated` when older ones were left out), then each reply still streaming
(`reply.start` and its text so far).

Call it after subscribing to the conversation's group, so nothing falls in between.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.conf import settings

from conversations import frames
from conversations.selectors import conversation_transcript
from conversations.stream_state import resume_frames


@dataclass(frozen=True)
class CatchUp:
    welcome: dict[str, Any]
    # Replies still streaming: frames to send after `welcome`, and the delta index each covers.
    streaming_frames: list[dict[str, Any]]
    streaming_indexes: dict[str, int]


def conversation_catch_up(conversation_id: UUID, *, last_seq: int, **welcome: Any) -> CatchUp:
    """The catch-up of one socket; `welcome` holds the fields only that socket's welcome has."""
    transcript = conversation_transcript(
        conversation_id, after_seq=last_seq, limit=max(1, settings.CATCH_UP_MAX_MESSAGES)
    )
    if transcript.truncated:
        welcome.update(truncated=True, first_seq=transcript.messages[0].seq)
    streaming_frames, streaming_indexes = resume_frames(transcript.streaming)
    return CatchUp(
        welcome=frames.welcome_frame(transcript.conversation, transcript.settled, **welcome),
        streaming_frames=streaming_frames,
        streaming_indexes=streaming_indexes,
    )
