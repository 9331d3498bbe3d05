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


def test_a_delta_past_the_next_expected_is_a_gap() -> None:
    stream = ReplyStreamFilter()
    assert stream.admit({"type": "reply.start", "message_id": "m"})
    assert not stream.is_gap(delta(0))
    assert stream.admit(delta(0))
    assert not stream.is_gap(delta(1))
    assert stream.admit(delta(1))
    assert stream.is_gap(delta(3))  # delta 2 was lost
    assert not stream.is_gap(delta(1))  # a repeat is no gap (admit drops it)


def test_a_delta_of_a_reply_whose_start_was_lost_is_a_gap() -> None:
    stream = ReplyStreamFilter()
    assert stream.is_gap(delta(4))
    assert not stream.is_gap(delta(0))


def test_after_a_resync_deltas_continue_past_the_snapshot() -> None:
    stream = ReplyStreamFilter()
    stream.admit({"type": "reply.start", "message_id": "m"})
    stream.admit(delta(0))
    assert stream.is_gap(delta(5))
    stream.resynced("m", 6)
    assert [stream.admit(delta(i)) for i in (5, 6, 7)] == [False, False, True]
    assert not stream.is_gap(delta(8))


def test_a_resumed_snapshot_sets_the_next_index_expected() -> None:
    stream = ReplyStreamFilter()
    stream.resumed({"m": 2})
    assert not stream.is_gap(delta(3))
    assert stream.is_gap(delta(4))


def test_no_gap_is_seen_in_a_reply_that_ended() -> None:
    stream = ReplyStreamFilter()
    stream.admit({"type": "reply.start", "message_id": "m"})
    stream.admit(delta(0))
    stream.admit(final())
    assert not stream.is_gap(delta(7))
