"""The ask deadlines' buckets (pure core, no clock of their own)."""

from __future__ import annotations

from nexus_reactive.core import Deadlines


def test_keys_fall_due_by_bucket_earliest_first() -> None:
    deadlines: Deadlines[str] = Deadlines(resolution=1.0)
    deadlines.add("late", 2.5)
    deadlines.add("early", 0.5)
    deadlines.add("settled", 1.5)
    deadlines.remove("settled", 2)

    assert deadlines.next_due() == 1.0
    assert deadlines.pop_due(1.0) == ["early"]
    assert deadlines.next_due() == 3.0
    assert deadlines.pop_due(10.0) == ["late"]
    assert deadlines.next_due() is None


def test_asks_one_at_a_time_keep_one_heap_entry_per_bucket() -> None:
    # Each ask empties its bucket when settled and the next one makes it again: the
    # heap of bucket numbers must not grow by an entry per ask until the bucket is due.
    deadlines: Deadlines[str] = Deadlines(resolution=1.0)
    for n in range(10_000):
        slot = deadlines.add(f"ask-{n}", 60.5)
        deadlines.remove(f"ask-{n}", slot)

    assert len(deadlines._order) == 1
    assert deadlines.next_due() is None  # nothing left: the stale entry is dropped
    assert deadlines._order == [] and not deadlines._ordered


def test_a_bucket_made_again_after_its_entry_was_dropped_still_falls_due() -> None:
    deadlines: Deadlines[str] = Deadlines(resolution=1.0)
    slot = deadlines.add("first", 5.5)
    deadlines.remove("first", slot)
    assert deadlines.next_due() is None

    deadlines.add("second", 5.5)
    deadlines.remove("absent", 99)  # a bucket that never was: nothing happens

    assert deadlines.next_due() == 6.0
    assert deadlines.pop_due(5.9) == []
    assert deadlines.pop_due(6.0) == ["second"]
    assert deadlines.next_due() is None
    deadlines.add("third", 5.5)  # the same bucket number, after it fell due
    assert deadlines.pop_due(6.0) == ["third"]


def test_remove_all_forgets_each_key_in_its_bucket_and_empty_buckets() -> None:
    deadlines: Deadlines[str] = Deadlines(resolution=1.0)
    slots = [deadlines.add(key, at) for key, at in (("a", 0.5), ("b", 0.7), ("c", 2.5))]

    deadlines.remove_all(["a", "b", "gone"], [slots[0], slots[1], 7])

    assert len(deadlines) == 1
    assert 1 not in deadlines._buckets  # emptied: dropped, its heap entry skipped
    assert deadlines.next_due() == 3.0
    assert deadlines.pop_due(10.0) == ["c"]
