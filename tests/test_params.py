import pytest

from dermai import params
from dermai.errors import DermaiError


def test_defaults_load_from_the_project_params(tmp_path):
    prm = params.load("params.yaml")
    assert prm.split.train == pytest.approx(0.8)
    assert prm.index.layout == "folders"
    assert prm.base.classes == params.HAM_CLASSES


def test_the_code_defaults_are_the_project_params():
    """`Params()` (what commands use outside a project, `load_or_defaults`) repeats params.yaml's
    values: the two are kept equal, so a default changed in one place only fails here."""
    assert params.load("params.yaml") == params.Params()


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
        ({"train": {"lr": True}}, "train.lr must be a number"),
        ({"model": {"dropout": False}}, "model.dropout must be a number"),
        ({"train": {"head_epochs": 2.0}}, "must be an integer"),
    ],
)
def test_wrong_types_are_rejected(raw, match):
    with pytest.raises(DermaiError, match=match):
        params.parse(raw)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"dedup": {"dhash_max_distance": 33}}, r"dedup.dhash_max_distance=33 is not in \[0, 32\]"),
        ({"dedup": {"dhash_max_distance": -1}}, r"is not in \[0, 32\]"),
        ({"split": {"train": 1.0}}, r"split.train=1.0 is not in \(0, 1\)"),
        ({"split": {"val": 0}}, r"is not in \(0, 1\)"),
        ({"train": {"lr": 0}}, r"train.lr=0 is not in \(0, inf\)"),
        ({"model": {"dropout": 1.0}}, r"is not in \[0, 1\)"),
        ({"train": {"unfreeze_blocks": 8}}, r"is not in \[0, 7\]"),
        ({"base": {"age_edges": [30, 0]}}, r"base.age_edges=\[30, 0\] is not in \[1, inf\]"),
        ({"split": {"min_groups_for_presence": 0}}, "split.min_groups_for_presence"),
    ],
)
def test_out_of_range_values_are_rejected(raw, match):
    with pytest.raises(DermaiError, match=match):
        params.parse(raw)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ({"dedup": {"dhash_max_distance": 0}}, 0),
        ({"dedup": {"dhash_max_distance": 32}}, 32),
        ({"model": {"dropout": 0.0}}, 0.0),
    ],
)
def test_range_edges_follow_their_closedness(raw, value):
    section, kv = next(iter(raw.items()))
    key = next(iter(kv))
    assert getattr(getattr(params.parse(raw), section), key) == value


def test_every_default_is_in_its_declared_range():
    params.parse(params.as_dict(params.Params()))


def test_load_or_defaults(tmp_path):
    assert params.load_or_defaults(tmp_path / "none.yaml") == params.Params()
    (tmp_path / "p.yaml").write_text("train: {lr: 0.5}\n")
    assert params.load_or_defaults(tmp_path / "p.yaml").train.lr == 0.5


def test_ints_are_accepted_for_floats():
    assert params.parse({"train": {"lr": 1}}).train.lr == 1.0


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(DermaiError, match="not found"):
        params.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize("key", ["train.lr", "split.train", "validate.size_rel_tolerance"])
def test_a_bool_is_not_a_float_param(tmp_path, key):
    """YAML `true` is a bool, and Python's bool is an int: it must not pass as 1.0."""
    section, name = key.split(".")
    path = tmp_path / "params.yaml"
    path.write_text(f"{section}:\n  {name}: true\n")
    with pytest.raises(DermaiError) as info:
        params.load(path)
    message = str(info.value)
    assert "\n" not in message and key in message


def test_colour_constancy_is_none_or_a_p_in_its_interval():
    assert params.Params().model.colour_constancy == "none"
    assert params.load("params.yaml").model.colour_constancy == "none"
    assert params.parse({"model": {"colour_constancy": 6}}).model.colour_constancy == 6.0
    assert params.parse({"model": {"colour_constancy": 1.5}}).model.colour_constancy == 1.5
    for bad in (0.5, 65, float("inf")):
        with pytest.raises(DermaiError, match=r"model.colour_constancy=.* is not in \[1, 64\]"):
            params.parse({"model": {"colour_constancy": bad}})
    for bad in ("off", True, None, [6]):
        with pytest.raises(DermaiError, match="model.colour_constancy"):
            params.parse({"model": {"colour_constancy": bad}})
