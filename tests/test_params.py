import pytest

from dermai import params
from dermai.errors import DermaiError


def test_defaults_load_from_the_project_params(tmp_path):
    prm = params.load("params.yaml")
    assert prm.split.train == pytest.approx(0.8)
    assert prm.index.layout == "folders"
    assert prm.base.classes == params.HAM_CLASSES


def test_unknown_section_is_rejected():
    with pytest.raises(DermaiError, match="unknown section.*trian"):
        params.parse({"trian": {}})


def test_unknown_nested_key_is_rejected_with_its_path():
    with pytest.raises(DermaiError, match=r"index\.manifest\.imageid"):
        params.parse({"index": {"manifest": {"imageid": "x"}}})


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"base": {"seed": "42"}}, "base.seed must be an integer"),
        ({"base": {"seed": True}}, "base.seed must be an integer"),
        ({"split": {"duplicate_policy": "lol"}}, "not one of"),
        ({"split": {"train": "a lot"}}, "must be a number"),
        ({"base": {"classes": "nv"}}, "must be a list"),
    ],
)
def test_wrong_types_are_rejected(raw, match):
    with pytest.raises(DermaiError, match=match):
        params.parse(raw)


def test_ints_are_accepted_for_floats():
    assert params.parse({"split": {"train": 1}}).split.train == 1.0


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(DermaiError, match="not found"):
        params.load(tmp_path / "nope.yaml")
