"""The coordinator's records: credentials, a study's states, and changes that are all-or-nothing."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from healthmesh.errors import AuthError, FederationError
from healthmesh.network import NetworkStore, StudyConflict, StudyNotFound, combine_results


@pytest.fixture
def store(tmp_path: Path) -> NetworkStore:
    store = NetworkStore(tmp_path / "network.sqlite")
    for hub in ("a", "b"):
        store.add_hub(hub, region=hub, role="data")
    store.add_researcher("alice")
    return store


def submit(store: NetworkStore, hubs: list[str] | None = None) -> str:
    return store.submit("alice", "purpose", "count", {"concept_ids": [1]}, hubs or ["a", "b"])


def test_credentials_are_stored_only_as_hashes_and_a_new_one_retires_the_old(tmp_path: Path) -> None:
    store = NetworkStore(tmp_path / "network.sqlite")
    first = store.add_hub("a", "r", "data")
    assert store.authenticate(first).kind == "hub"
    second = store.add_hub("a", "r", "data")
    with pytest.raises(AuthError):
        store.authenticate(first)
    assert store.authenticate(second).name == "a"
    token = store.add_researcher("alice")
    assert store.authenticate(token).kind == "researcher"
    dump = "\n".join(sqlite3.connect(tmp_path / "network.sqlite").iterdump())
    assert first not in dump and second not in dump and token not in dump


def test_a_study_moves_only_along_its_transitions_and_finishes_when_every_hub_has_ended(
    store: NetworkStore,
) -> None:
    study_id = submit(store)
    assert store.transition(study_id, "a", "running")["study_finished"] is False
    with pytest.raises(StudyConflict, match="cannot become approved"):
        store.transition(study_id, "a", "approved")
    with pytest.raises(StudyConflict, match="result"):
        store.transition(study_id, "a", "done")  # done needs its result
    with pytest.raises(StudyConflict, match="reason"):
        store.transition(study_id, "b", "refused")
    store.transition(study_id, "a", "done", result={"persons": 12})
    with pytest.raises(StudyConflict):
        store.transition(study_id, "a", "done", result={"persons": 99})  # never rewritten
    assert store.study(study_id)["state"] == "open"
    assert store.transition(study_id, "b", "refused", note="not now")["study_finished"] is True
    study = store.study(study_id, "alice")
    assert study["state"] == "finished" and study["finished_at"] is not None
    assert study["hubs"]["a"]["result"] == {"persons": 12}
    assert study["hubs"]["b"] == {**study["hubs"]["b"], "state": "refused", "note": "not now", "result": None}
    with pytest.raises(StudyNotFound):
        store.study(study_id, "bob")


def test_delivery_hands_a_study_once_unless_asked_again(store: NetworkStore) -> None:
    study_id = submit(store)
    assert [s["study_id"] for s in store.deliver("a")] == [study_id]
    assert store.deliver("a") == []
    assert [s["study_id"] for s in store.deliver("a", again=True)] == [study_id]
    store.transition(study_id, "a", "running")
    # A hub that starts again is handed what it had started too, with the state it had reached.
    assert [(s["study_id"], s["state"]) for s in store.deliver("a", again=True)] == [(study_id, "running")]
    store.transition(study_id, "a", "done", result={"persons": 7})
    assert store.deliver("a", again=True) == []
    assert [s["study_id"] for s in store.waiting_at("b")] == [study_id]


def test_past_its_deadline_a_study_finishes_with_the_hubs_that_answered(store: NetworkStore) -> None:
    study_id = store.submit("alice", "purpose", "count", {"concept_ids": [1]}, ["a", "b"], deadline_s=60)
    store.transition(study_id, "a", "running")
    store.transition(study_id, "a", "done", result={"persons": 9})
    assert store.expire(time.time() + 30) == []
    assert store.expire(time.time() + 61) == [study_id]
    study = store.study(study_id)
    assert study["state"] == "finished"
    assert study["hubs"]["b"]["state"] == "failed" and "deadline" in study["hubs"]["b"]["note"]
    assert study["hubs"]["a"]["result"] == {"persons": 9}
    with pytest.raises(StudyConflict):
        store.transition(study_id, "b", "running")  # too late: the part has ended


def test_two_racing_decisions_on_one_study_cannot_both_win(tmp_path: Path, store: NetworkStore) -> None:
    study_id = submit(store)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def decide(state: str, note: str | None) -> None:
        own = NetworkStore(tmp_path / "network.sqlite")  # another process would open its own connection
        barrier.wait()
        try:
            own.transition(study_id, "a", state, note=note)
            outcomes.append(state)
        except StudyConflict:
            outcomes.append("conflict")

    threads = [
        threading.Thread(target=decide, args=("approved", None)),
        threading.Thread(target=decide, args=("refused", "no")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("conflict") == 1
    winner = next(o for o in outcomes if o != "conflict")
    assert store.study(study_id)["hubs"]["a"]["state"] == winner


def test_a_study_for_an_unknown_hub_is_not_recorded(store: NetworkStore) -> None:
    with pytest.raises(FederationError, match="no hub 'c'"):
        submit(store, ["a", "c"])
    assert store.studies_of("alice") == []


def test_withheld_and_missing_answers_make_the_network_count_a_lower_bound() -> None:
    parts = {
        "a": {"state": "done", "result": {"persons": 40, "cells": {"sex=female": 22, "sex=male": None}}},
        "b": {"state": "done", "result": {"persons": None, "cells": {"sex=female": None, "sex=male": None}}},
        "c": {"state": "refused", "result": None},
    }
    combined = combine_results("count", parts)
    assert combined["persons"] == {"count": 40, "withheld_at": ["b"], "complete": False}
    assert combined["missing"] == ["c"]
    assert combined["cells"]["sex=female"] == {"count": 22, "withheld_at": ["b"]}
