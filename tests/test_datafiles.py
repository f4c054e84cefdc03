"""modelrepo.datafiles: users' .npy, .npz and .csv files read whole or in chunks, and refused with a reason."""

import numpy as np
import pytest

from modelrepo.datafiles import DataFile, DataFileError


@pytest.fixture
def rows():
    return np.random.default_rng(0).normal(size=(23, 4)).astype(np.float32)


def test_each_format_reads_the_same_rows_in_any_chunking(tmp_path, rows):
    np.save(tmp_path / "a.npy", rows)
    np.savez(tmp_path / "b.npz", only=rows)
    np.savetxt(tmp_path / "c.csv", rows, delimiter=",", header="w,x,y,z", comments="", fmt="%.9g")
    for name in ("a.npy", "b.npz", "c.csv"):
        data = DataFile(tmp_path / name)
        assert len(data) == 23
        np.testing.assert_array_equal(data.read(), rows)
        for size in (1, 5, 23, 100):
            chunks = list(data.chunks(0, size))
            assert [start for start, _ in chunks] == list(range(0, 23, size))
            np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), rows)
        later = list(data.chunks(20, 2))
        assert [start for start, _ in later] == [20, 22]
        np.testing.assert_array_equal(np.concatenate([c for _, c in later]), rows[20:])


def test_an_npz_of_several_arrays_needs_a_key(tmp_path, rows):
    np.savez(tmp_path / "two.npz", x=rows, y=rows[:3])
    with pytest.raises(DataFileError, match="name one with --key"):
        DataFile(tmp_path / "two.npz")
    assert len(DataFile(tmp_path / "two.npz", "y")) == 3
    with pytest.raises(DataFileError, match="no array 'z'"):
        DataFile(tmp_path / "two.npz", "z")


def test_scalar_rows_become_points_of_one_value(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(5.0))
    assert DataFile(tmp_path / "s.npy").read().shape == (5, 1)


@pytest.mark.parametrize("name, content, reason", [
    ("missing.npy", None, "no such file"),
    ("x.txt", "1,2", "unsupported file type"),
    ("e.csv", "a,b\n", "empty"),
    ("bad.csv", "1,2\n3,x\n", "rows 1-2"),
    ("s.npy", np.array(["a", "b"]), "numbers are needed"),
    ("z.npy", np.zeros((0, 3)), "empty"),
])
def test_unusable_files_are_refused_with_the_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(DataFileError, match=reason):
        DataFile(path).read()
