"""Issue 23 (3): learners' trainable models are bounded per visitor as well as in all, and under memory pressure
the models of idle sessions are taken back first."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from playground import limits
from playground.ui import common


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(common, "_LIVE", weakref.WeakKeyDictionary())

    def use(**kw):
        monkeypatch.setattr(limits, "LIMITS", limits.Limits(**kw))

    return use


def test_idle_sessions_are_reclaimed_under_pressure_and_busy_ones_are_not(fresh):
    fresh(max_live_train_params=2000, reclaim_idle_seconds=60)
    idle, busy = common.new_session(), common.new_session()
    idle["train_run"] = common.register_trainable(torch.nn.Linear(20, 30), "model", idle)  # 630 parameters
    busy["orpo_model"] = {"bundle": type("B", (), {"model": None})(), "steps": 0}
    busy["orpo_model"]["bundle"].model = common.register_trainable(torch.nn.Linear(20, 30), "copy", busy)
    common._LIVE[idle["train_run"]].used -= 3600  # an hour without use
    newcomer = common.new_session()
    newcomer["train_run"] = common.register_trainable(torch.nn.Linear(20, 30), "model", newcomer)  # 1890 > 1000
    assert idle["train_run"] is None  # taken back: the learner finds no model, as after expiry
    assert busy["orpo_model"]["bundle"].model is not None  # used recently: kept
    gc.collect()
    assert common._live_params() == 2 * 630


def test_without_pressure_nothing_is_reclaimed(fresh):
    fresh(max_live_train_params=100_000, reclaim_idle_seconds=60)
    s = common.new_session()
    s["train_run"] = common.register_trainable(torch.nn.Linear(20, 30), "model", s)
    common._LIVE[s["train_run"]].used -= 3600
    common.register_trainable(torch.nn.Linear(20, 30), "model", common.new_session())
    assert s["train_run"] is not None


def test_one_visitor_is_bounded_apart_from_the_others(fresh, monkeypatch):
    fresh(max_client_train_params=1000, max_live_train_params=100_000)
    who = {"id": "203.0.113.7"}
    monkeypatch.setattr(common, "client_id", lambda: who["id"])
    keep = [common.register_trainable(torch.nn.Linear(20, 30))]  # 630
    with pytest.raises(ValueError, match="the limit per visitor is 0M"):
        common.register_trainable(torch.nn.Linear(20, 30))
    who["id"] = "198.51.100.9"
    keep.append(common.register_trainable(torch.nn.Linear(20, 30)))  # another address: its own share
    assert len(keep) == 2
