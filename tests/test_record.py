"""Record: immutable named fields, row-wise take, equality and pickling."""

from __future__ import annotations

import copy
import pickle

import cloudpickle
import numpy as np
import pytest

import probpipe as pp


def make_record() -> pp.Record:
    return pp.Record(name="obs", X=np.arange(6.0).reshape(3, 2), y=np.array([1, 0, 1]))


def test_fields_are_read_by_key_and_attribute_in_the_order_given():
    rec = pp.Record(name="obs", z=np.zeros(2), a=np.ones(2), m="label")
    assert rec.fields == ("z", "a", "m")  # not sorted
    assert list(rec) == ["z", "a", "m"]
    assert rec.name == "obs"
    np.testing.assert_array_equal(rec["a"], [1.0, 1.0])
    assert rec.m == "label"
    with pytest.raises(KeyError, match=r"no field 'b'.*\['z', 'a', 'm'\]"):
        rec["b"]
    with pytest.raises(AttributeError, match="no field 'b'"):
        _ = rec.b


def test_attributes_cannot_be_set_or_deleted():
    rec = make_record()
    with pytest.raises(AttributeError, match="immutable"):
        rec.X = np.zeros(3)
    with pytest.raises(AttributeError, match="immutable"):
        rec.new_field = 1
    with pytest.raises(AttributeError, match="immutable"):
        del rec.X
    with pytest.raises(TypeError):
        rec["X"] = np.zeros(3)
    assert rec.fields == ("X", "y")


def test_arrays_are_read_only_and_cannot_be_made_writable():
    rec = make_record()
    with pytest.raises(ValueError, match="read-only"):
        rec["X"][0, 0] = 99.0
    with pytest.raises(ValueError):
        rec["X"].flags.writeable = True
    assert rec["X"][0, 0] == 0.0


def test_changing_the_callers_array_afterwards_does_not_change_the_record():
    X = np.arange(4.0)
    rec = pp.Record(X=X)
    X[0] = 99.0
    X[1:3] = -1.0
    np.testing.assert_array_equal(rec["X"], [0.0, 1.0, 2.0, 3.0])


def test_lists_are_stored_as_tuples():
    rec = pp.Record(items=[1, 2, 3])
    assert rec["items"] == (1, 2, 3)
    with pytest.raises(AttributeError):
        rec["items"].append(4)


def test_replace_returns_a_new_record_and_leaves_this_one():
    rec = make_record()
    new = rec.replace(y=np.array([5, 5, 5]), w=np.ones(3))
    assert new.fields == ("X", "y", "w")
    np.testing.assert_array_equal(new["y"], [5, 5, 5])
    np.testing.assert_array_equal(rec["y"], [1, 0, 1])
    assert rec.fields == ("X", "y")


def test_equality_compares_name_fields_and_contents():
    assert make_record() == make_record()
    assert make_record() != make_record().replace(y=np.array([1, 1, 1]))
    assert make_record() != pp.Record(name="other", **make_record())
    assert make_record() != pp.Record(name="obs", X=make_record()["X"])
    assert make_record() != {"X": make_record()["X"], "y": make_record()["y"]}
    with pytest.raises(TypeError):
        hash(make_record())


@pytest.mark.parametrize(
    "roundtrip",
    [
        lambda r: pickle.loads(pickle.dumps(r)),
        lambda r: pickle.loads(pickle.dumps(r, protocol=5)),
        lambda r: cloudpickle.loads(cloudpickle.dumps(r)),
        copy.deepcopy,
    ],
    ids=["pickle", "pickle-5", "cloudpickle", "deepcopy"],
)
def test_records_pickle_to_equal_immutable_records(roundtrip):
    rec = make_record()
    back = roundtrip(rec)
    assert isinstance(back, pp.Record)
    assert back == rec
    assert back.fields == rec.fields and back.name == rec.name
    with pytest.raises(ValueError, match="read-only"):
        back["X"][0, 0] = 1.0
    with pytest.raises(AttributeError):
        back.X = None


def test_take_indexes_every_field_the_same_way():
    rec = make_record()
    taken = rec.take(np.array([2, 2, 0]))
    assert isinstance(taken, pp.Record)
    assert taken.name == "obs" and taken.fields == ("X", "y")
    np.testing.assert_array_equal(taken["X"], [[4.0, 5.0], [4.0, 5.0], [0.0, 1.0]])
    np.testing.assert_array_equal(taken["y"], [1, 1, 1])
    with pytest.raises(ValueError, match="read-only"):
        taken["y"][0] = 0
    np.testing.assert_array_equal(rec["y"], [1, 0, 1])  # the source is untouched


def test_n_rows_is_the_common_length():
    assert make_record().n_rows() == 3


def test_n_rows_names_the_fields_when_lengths_differ():
    rec = pp.Record(X=np.zeros(5), y=np.zeros(4))
    with pytest.raises(ValueError, match=r"equal lengths.*X=5, y=4"):
        rec.n_rows()


def test_n_rows_rejects_scalar_fields():
    with pytest.raises(ValueError, match="'c' is a scalar"):
        pp.Record(X=np.zeros(3), c=1.0).n_rows()


def test_bad_construction():
    with pytest.raises(ValueError, match="at least one field"):
        pp.Record(name="empty")
    with pytest.raises(TypeError, match="name"):
        pp.Record(name=3, X=np.zeros(2))
