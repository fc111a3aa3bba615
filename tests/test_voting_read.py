"""The columnar CSV reader (pyarrow.csv) reads every file exactly as pandas' parser did, or hands it to pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from voting import VotingError
from voting.predictions import _arrow_frame, _pandas_frame, read_csv_frame

CASES = {
    "plain": "id,prediction\n1,4\n2,3\n",
    "bom and CRLF": "\ufeffid,prediction\r\n1,4\r\n2,3\r\n",
    "quoted comma, quote and newline": 'id,prediction\n1,"a, b"\n2,"say ""5"""\n3,"line\nbreak"\n',
    "null-like words stay text": "id,prediction,dimension\nNA,null,N/A\nnan,None,\n",
    "leading zeros and spaces": "id,prediction\n007, 4 \n0.50,3\n",
    "chinese and blank lines": "id,prediction,dimension\nTE1,评分：4,流畅性\n\nTE2,3,规范性\n",
    "probabilities": "id,prediction,prob_0,prob_1\na,1,0.25,0.75\nb,0,1e-07,0.9999999\n",
    "header spaces": "id , prediction\n1,4\n",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_arrow_reads_what_pandas_reads(tmp_path, text):
    path = tmp_path / "p.csv"
    path.write_bytes(text.encode("utf-8"))
    arrow, _ = _arrow_frame(path.read_bytes())
    assert arrow is not None
    pd.testing.assert_frame_equal(arrow, _pandas_frame(path, ("id",)))
    assert all(isinstance(v, str) for column in arrow.columns for v in arrow[column])


@pytest.mark.parametrize(
    "data",
    [
        "id,prediction\n1,评分：4\n".encode("gb18030"),  # not UTF-8
        b"id,prediction\n1,4\n2\n",  # a short row: pandas fills it with ""
        b"id,id\n1,2\n",  # pandas renames the second "id.1"
        b"id,\n1,2\n",  # pandas names it "Unnamed: 1"
        b"",
    ],
)
def test_what_arrow_does_not_take_goes_to_pandas(data):
    assert _arrow_frame(data) == (None, False)


def test_pandas_path_keeps_gb18030_and_short_rows(tmp_path):
    path = tmp_path / "g.csv"
    path.write_bytes("id,prediction\n1,评分：4\n2\n".encode("gb18030"))
    frame = read_csv_frame(path, ("id", "prediction"))
    assert frame.to_dict("list") == {"id": ["1", "2"], "prediction": ["评分：4", ""]}


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"id,prediction\n1,4\n2,\xff\xfe\xff\n")
    with pytest.raises(VotingError, match="line 3"):
        read_csv_frame(path, ("id", "prediction"))


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"id": ["a", "b"], "prediction": ["1", None], "decided_by": ["majority", "tie_breaker"]}),
        pd.DataFrame({"id": ["a", "b"], "prediction": ["x, y", "评分：4"]}),  # quoted: pandas writes it
        pd.DataFrame({"id": ["a", "b"], "prediction": ['say "5"', "line\nbreak"]}),
        pd.DataFrame({"id": ["a", "b"], "prob_1": [0.25, 1e-07]}),  # numbers: pandas formats them
        pd.DataFrame({"id": ["", "b"]}),  # one column: a lone "" is quoted
    ],
)
def test_frame_writer_writes_pandas_bytes(tmp_path, frame):
    from core.fileio import atomic_write_frame

    atomic_write_frame(tmp_path / "out.csv", frame)
    assert (tmp_path / "out.csv").read_bytes() == frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_same_ids_are_shared_not_rechecked(tmp_path):
    a, b, c = (tmp_path / f"{n}.csv" for n in "abc")
    a.write_text("id,prediction\nx,1\ny,2\n")
    b.write_text("id,prediction\nx,2\ny,2\n")
    c.write_text("id,prediction\ny,2\ny,1\n")
    first = read_csv_frame(a, ("id", "prediction"))
    ids = first["id"].to_numpy()
    second = read_csv_frame(b, ("id", "prediction"), same_ids=ids)
    assert second["id"].to_numpy() is ids or np.shares_memory(second["id"].to_numpy(), ids)
    with pytest.raises(VotingError, match="duplicate ids y"):  # different ids: checked as any file
        read_csv_frame(c, ("id", "prediction"), same_ids=ids)
