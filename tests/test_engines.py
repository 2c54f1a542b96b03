"""Scale-out (spikec.engines): shards are whole batches covering the data once; shard results come back in shard
order whatever the engine; a failing or dying worker is reported with its shard and retried when asked; a bad
input is reported as such, once."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikec.engines import SHARDS_PER_WORKER, Engine, Shard, ShardError, map_shards, shards_of
from spikec.errors import InputError


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 5000), batch=st.integers(1, 300), workers=st.integers(1, 16))
def test_shards_are_whole_batches_covering_every_sample_once(count, batch, workers):
    shards = shards_of(count, batch, workers)
    assert [s.index for s in shards] == list(range(len(shards)))
    assert shards[0].start == 0 and shards[-1].stop == count
    assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))
    assert all(s.start % batch == 0 and s.stop > s.start for s in shards)
    batches = -(-count // batch)
    assert min(batches, workers) <= len(shards) <= workers * SHARDS_PER_WORKER    # every worker has work


def _square_sum(shard: Shard) -> tuple[int, int]:
    return shard.index, sum(i * i for i in range(shard.start, shard.stop))


class _FailsOnce:
    """Fails (``how``: raises or exits the worker process) the first time it meets shard 1, then works: the
    marker file says it has failed already, across processes."""

    def __init__(self, marker: str, how: str):
        self.marker, self.how = marker, how

    def __call__(self, shard: Shard):
        if shard.index == 1 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            if self.how == "exit":
                os._exit(7)
            raise RuntimeError("flaky")
        return _square_sum(shard)


def _bad_input(shard: Shard):
    raise InputError(f"sample {shard.start} is not an image")


SHARDS = shards_of(100, 8, 2)
EXPECTED = [_square_sum(s) for s in SHARDS]


@pytest.mark.parametrize("engine", [Engine(), Engine("local", 2), pytest.param(Engine("ray", 2), marks=pytest.mark.ray)], ids=["in-process", "local-2",
                                                                                          "ray-2"])
def test_every_engine_returns_the_shards_results_in_shard_order(engine):
    progressed = []
    assert map_shards(_square_sum, SHARDS, engine, progressed.append) == EXPECTED
    assert sorted(s.index for s in progressed) == list(range(len(SHARDS)))


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_failed_shard_is_named_and_runs_again_with_retries(tmp_path, how):
    with pytest.raises(ShardError) as failed:
        map_shards(_FailsOnce(str(tmp_path / "a"), how), SHARDS, Engine("local", 2))
    what = "its worker died" if how == "exit" else "RuntimeError: flaky"
    assert str(failed.value) == (f"shard 1 (samples {SHARDS[1].start}-{SHARDS[1].stop - 1}) failed after 1 attempt "
                                 f"({what}); --retries K runs a failed shard again")
    assert map_shards(_FailsOnce(str(tmp_path / "b"), how), SHARDS, Engine("local", 2, retries=1)) == EXPECTED


@pytest.mark.ray
def test_a_dead_ray_actor_is_replaced_for_the_retry(tmp_path):
    assert map_shards(_FailsOnce(str(tmp_path / "c"), "exit"), SHARDS, Engine("ray", 2, retries=1)) == EXPECTED


def test_bad_input_in_a_worker_is_bad_input_in_the_driver_and_not_retried():
    with pytest.raises(InputError, match=r"^sample \d+ is not an image$"):   # the first shard to fail
        map_shards(_bad_input, SHARDS, Engine("local", 2, retries=3))


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "spark"}, "unknown engine 'spark'; engines: local, ray"),
    ({"workers": 0}, "--workers takes a number >= 1, got 0"),
    ({"retries": -1}, "--retries takes a number >= 0, got -1"),
    ({"address": "10.0.0.1:6379"}, "--address names a Ray cluster: it needs --engine ray"),
])
def test_engine_options_are_checked(kwargs, message):
    with pytest.raises(InputError) as error:
        Engine(**kwargs)
    assert str(error.value) == message


@pytest.mark.ray
def test_an_unreachable_ray_cluster_is_one_clear_error():
    with pytest.raises(InputError, match=r"^cannot reach the Ray cluster at 127\.0\.0\.1:1: "):
        map_shards(_square_sum, SHARDS, Engine("ray", 2, address="127.0.0.1:1"))
