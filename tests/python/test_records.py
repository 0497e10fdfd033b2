"""Saved records: the CLI's JSON layout (nlohmann's dump(2): keys sorted, numbers as written)."""

import pytest

from stimloop._records import record_path, record_text


def test_record_text_is_the_cli_layout():
    text = record_text('{"b": 1.50, "a": [1e-05, 2, "\\u00e9\\n"], "c": {}, "d": []}', "x.png")
    assert text == ('{\n  "a": [\n    1e-05,\n    2,\n    "\u00e9\\n"\n  ],\n  "b": 1.50,\n'
                    '  "c": {},\n  "d": [],\n  "png": "x.png"\n}\n')


def test_record_path_is_beside_the_png():
    assert record_path("out/s_1.png") == "out/s_1.json"
    with pytest.raises(ValueError, match="does not end in .png"):
        record_path("out/s_1.jpg")
