"""Provenance of broadcast and sweep results (API.md section 5)."""

from __future__ import annotations

import gc
import json
import re
import weakref

import numpy as np
import pytest

import probpipe as pp

N = 16
REQUIRED_KEYS = (
    "orchestrate",
    "backend",
    "backend_options",
    "func",
    "n_samples",
    "n_rows",
    "seed",
    "chunksize",
    "broadcast_args",
)


def shifted(x, data, shift=0.5, rng=None):
    return float(x) + float(np.sum(data)) + shift + rng.normal()


def wf(**options) -> pp.WorkflowFunction:
    return pp.WorkflowFunction(shifted, **{"n_broadcast_samples": N, "seed": 11, **options})


def parents_by_name(result) -> dict[str, pp.Parent]:
    return {p.name: p for p in result.provenance.parents}


def test_broadcast_metadata_has_every_documented_key():
    result = wf(chunksize=4)(pp.Normal(0.0, 1.0), np.arange(3.0))
    prov = result.provenance
    assert isinstance(prov, pp.Provenance)
    assert prov.operation == "broadcast"
    meta = prov.metadata
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    assert not missing, f"metadata lacks {missing}"
    assert meta["orchestrate"] == "off"  # the sequential backend's tag
    assert meta["backend"] == "sequential"
    assert meta["backend_options"] == {}
    assert meta["func"].endswith("shifted")
    assert meta["n_samples"] == N
    assert meta["n_rows"] == N
    assert meta["seed"] == 11
    assert meta["chunksize"] == 4
    assert meta["n_chunks"] == N // 4
    assert meta["broadcast_args"] == ["x"]


def test_n_samples_is_requested_and_n_rows_is_run():
    result = wf()(pp.Normal(0.0, 1.0), pp.Uniform(0.0, 1.0), shift=pp.sweep([0.0, 1.0, 2.0]))
    meta = result.provenance.metadata
    assert result.provenance.operation == "sweep"
    assert meta["n_samples"] == N
    assert meta["n_rows"] == 3 * N
    assert meta["broadcast_args"] == ["x", "data"]
    assert meta["sweep_args"] == ["shift"]
    for cell in result:
        assert cell.provenance.operation == "broadcast"
        assert cell.provenance.metadata["n_rows"] == N


@pytest.mark.parametrize("mode", [pp.ProvenanceMode.LIGHTWEIGHT, pp.ProvenanceMode.FULL])
def test_to_dict_is_json_safe_and_from_dict_reads_it_back(provenance_mode, mode):
    provenance_mode.mode = mode
    results = [
        wf()(pp.Normal(0.0, 1.0), np.arange(3.0)),
        wf()(pp.Normal(0.0, 1.0), np.arange(3.0), shift=pp.sweep([0.1, 0.2])),
    ]
    for result in results:
        prov = result.provenance
        text = json.dumps(prov.to_dict())
        back = pp.Provenance.from_dict(json.loads(text))
        assert back == prov
        assert back.to_dict() == prov.to_dict()
        assert [(p.name, p.type, p.fingerprint) for p in back.parents] == [
            (p.name, p.type, p.fingerprint) for p in prov.parents
        ]
        assert all(p.ref is None for p in back.parents)


def test_from_dict_rejects_what_is_not_provenance():
    with pytest.raises(ValueError, match="not a provenance dict"):
        pp.Provenance.from_dict({"parents": []})


def test_parents_carry_name_type_and_fingerprint_without_references():
    assert pp.provenance_config.mode is pp.ProvenanceMode.LIGHTWEIGHT  # the default
    dist = pp.Normal(0.0, 1.0)
    data = np.arange(3.0)
    result = wf()(dist, data)
    parents = parents_by_name(result)
    assert list(parents) == ["x", "data", "shift"]  # every bound input, defaults too
    assert parents["x"].type == "Normal"
    assert parents["data"].type == "ndarray"
    assert parents["shift"].type == "float"
    for parent in parents.values():
        assert re.fullmatch(r"[0-9a-f]{32}", parent.fingerprint)
        assert parent.ref is None
        assert set(parent.to_dict()) == {"name", "type", "fingerprint"}

    # Nothing in the result keeps the input alive.
    alive = weakref.ref(dist)
    del dist
    gc.collect()
    assert alive() is None


def test_full_mode_keeps_live_references(provenance_mode):
    provenance_mode.mode = pp.ProvenanceMode.FULL
    dist = pp.Normal(0.0, 1.0)
    data = np.arange(3.0)
    result = wf()(dist, data)
    parents = parents_by_name(result)
    assert parents["x"].ref is dist
    assert parents["data"].ref is data
    assert parents["x"].type == "Normal"
    json.dumps(result.provenance.to_dict())  # references never reach the dict


def test_off_mode_gives_no_provenance(provenance_mode):
    provenance_mode.mode = pp.ProvenanceMode.OFF
    result = wf()(pp.Normal(0.0, 1.0), np.arange(3.0))
    assert isinstance(result, pp.EmpiricalDistribution)
    assert result.provenance is None
    swept = wf()(pp.Normal(0.0, 1.0), np.arange(3.0), shift=pp.sweep([1.0, 2.0]))
    assert swept.provenance is None
    assert all(cell.provenance is None for cell in swept)


def test_mode_accepts_names_and_rejects_unknown_ones(provenance_mode):
    provenance_mode.mode = "full"
    assert provenance_mode.mode is pp.ProvenanceMode.FULL
    with pytest.raises(ValueError, match="FULL, LIGHTWEIGHT, OFF"):
        provenance_mode.mode = "verbose"
    assert provenance_mode.mode is pp.ProvenanceMode.FULL


def test_recorded_fresh_seed_reproduces_the_result_exactly():
    unseeded = pp.WorkflowFunction(shifted, n_broadcast_samples=N)
    first = unseeded(pp.Normal(0.0, 1.0), np.arange(3.0))
    second = unseeded(pp.Normal(0.0, 1.0), np.arange(3.0))
    seed = first.provenance.metadata["seed"]
    assert isinstance(seed, int)
    assert seed != second.provenance.metadata["seed"]
    assert not np.array_equal(first.samples, second.samples)

    # The seed survives JSON, and passed back it repeats the run bit for bit.
    seed = json.loads(first.provenance.to_json())["metadata"]["seed"]
    again = unseeded.with_options(seed=seed)(pp.Normal(0.0, 1.0), np.arange(3.0))
    np.testing.assert_array_equal(again.samples, first.samples)
    assert again.provenance.metadata["seed"] == seed


def ignores_data(x, data, shift=0.5):
    return float(x) + shift


def fingerprints(*args, **kwargs) -> dict[str, str]:
    """Fingerprint of each input of one call, by parameter name."""
    call = pp.WorkflowFunction(ignores_data, n_broadcast_samples=4, seed=1)
    return {p.name: p.fingerprint for p in call(*args, **kwargs).provenance.parents}


def test_fingerprints_are_equal_for_equal_content():
    a = fingerprints(pp.Normal(0.0, 1.0), np.arange(3.0), shift=0.5)
    b = fingerprints(pp.Normal(0.0, 1.0), np.arange(3.0), shift=0.5)
    assert a == b
    rec = fingerprints(pp.Normal(0.0, 1.0), pp.Record(name="d", v=np.arange(3.0)))
    assert rec == fingerprints(pp.Normal(0.0, 1.0), pp.Record(name="d", v=np.arange(3.0)))


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("x", {"x": pp.Normal(0.0, 2.0)}),
        ("x", {"x": pp.Uniform(0.0, 1.0)}),
        ("data", {"data": np.array([0.0, 1.0, 2.5])}),
        ("data", {"data": np.arange(3)}),  # same values, other dtype
        ("data", {"data": np.arange(3.0).reshape(3, 1)}),  # same bytes, other shape
        ("shift", {"shift": 0.25}),
    ],
)
def test_fingerprints_differ_for_different_content(name, changed):
    base = {"x": pp.Normal(0.0, 1.0), "data": np.arange(3.0), "shift": 0.5}
    before = fingerprints(**base)
    after = fingerprints(**{**base, **changed})
    assert after[name] != before[name]
    assert all(after[k] == before[k] for k in before if k != name)
