from conversations.stream_filter import ReplyStreamFilter


def delta(index: int, message_id: str = "m") -> dict:
    return {"type": "reply.delta", "message_id": message_id, "index": index, "text": "x"}


def final(message_id: str = "m") -> dict:
    return {"type": "message", "message": {"id": message_id, "status": "complete"}}


def test_deltas_inside_the_resume_snapshot_are_dropped() -> None:
    stream = ReplyStreamFilter()
    stream.resumed({"m": 2})
    assert [stream.admit(delta(i)) for i in range(5)] == [False, False, False, True, True]


def test_a_restart_counts_from_zero_again() -> None:
    stream = ReplyStreamFilter()
    stream.resumed({"m": 5})
    assert stream.admit({"type": "reply.start", "message_id": "m"})
    assert stream.admit(delta(0))


def test_nothing_of_a_reply_passes_after_its_final_message() -> None:
    stream = ReplyStreamFilter()
    assert stream.admit({"type": "reply.start", "message_id": "m"})
    assert stream.admit(delta(0))
    assert stream.admit(final())
    assert not stream.admit(delta(1))
    assert not stream.admit({"type": "reply.start", "message_id": "m"})
    assert stream.admit(delta(0, message_id="other"))


def test_ended_replies_are_remembered_within_a_bound() -> None:
    stream = ReplyStreamFilter()
    for n in range(100):
        stream.admit({"type": "reply.start", "message_id": f"m{n}"})
        stream.admit(final(f"m{n}"))
    assert not stream.admit(delta(9, message_id="m99"))
    assert stream.admit(delta(9, message_id="m0"))  # forgotten: bounded memory
