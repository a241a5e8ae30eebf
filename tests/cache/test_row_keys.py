"""Encoder-cache row keys for list-valued file columns (several reference images in one column):
each file counts, in order, and the index records the list."""

from diffsynth.cache.store import RowKeys


def keys(base) -> RowKeys:
    return RowKeys(build="b", sizing={}, file_keys=("image", "edit_image"), base_path=base)


def test_each_file_of_a_list_column_keys_the_row(tmp_path):
    for name, data in [("t.png", b"target"), ("a.png", b"first"), ("b.png", b"second")]:
        (tmp_path / name).write_bytes(data)
    row = {"image": "t.png", "edit_image": ["a.png", "b.png"], "prompt": "p"}
    key = keys(tmp_path).key(row)
    assert keys(tmp_path).source(row)["files"] == {"image": "t.png", "edit_image": ["a.png", "b.png"]}
    assert keys(tmp_path).key({**row, "edit_image": ["b.png", "a.png"]}) != key  # order matters
    assert keys(tmp_path).key({**row, "edit_image": ["a.png"]}) != key
    (tmp_path / "b.png").write_bytes(b"changed")
    assert keys(tmp_path).key(row) != key  # the second reference's bytes count too
