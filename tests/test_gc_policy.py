"""wscore.gc_policy.FreezeSurvivors: a full collection freezes its survivors; a thaw collects
everything, cycles among frozen objects included."""

from __future__ import annotations

import gc
import weakref

from wscore.gc_policy import FreezeSurvivors


class Node:
    pass


def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def test_survivors_of_a_full_collection_are_frozen_and_a_thaw_collects_their_cycles():
    now = [0.0]
    policy = FreezeSurvivors(thaw_every=60.0, clock=lambda: now[0]).install()
    try:
        kept = cycle()
        gc.collect()                               # full: kept survives, and is frozen
        assert policy.freezes >= 1 and gc.get_freeze_count() > 0
        assert policy.full_collections >= 1 and policy.longest_full > 0
        gone = weakref.ref(kept)
        del kept                                   # a cycle: reference counting cannot free it
        gc.collect()
        assert gone() is not None                  # frozen: the collector does not look at it
        now[0] = 59.0
        assert not policy.tick() and gone() is not None
        now[0] = 60.0
        assert policy.tick() and policy.thaws == 1
        assert gone() is None                      # the thaw's full collection found it
        assert gc.get_freeze_count() > 0           # and froze the survivors again
    finally:
        policy.uninstall()
    assert gc.get_freeze_count() == 0 and policy._after_collection not in gc.callbacks


def test_what_is_frozen_is_still_freed_by_reference_counting():
    policy = FreezeSurvivors().install()
    try:
        kept = Node()
        gc.collect()
        gone = weakref.ref(kept)
        del kept
        assert gone() is None
    finally:
        policy.uninstall()


def test_off_it_only_counts():
    policy = FreezeSurvivors(thaw_every=None).install()
    try:
        gc.collect()
        assert policy.full_collections >= 1 and policy.freezes == 0 and gc.get_freeze_count() == 0
        assert not policy.tick()
    finally:
        policy.uninstall()
