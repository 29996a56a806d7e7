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


# --------------------------------------------------------------------------- every field declared


def unconstrained(cls: type, where: str = "") -> list[str]:
    """Fields of dataclass `cls` (nested ones walked) that declare no constraint: like
    scikit-learn's common test that every estimator parameter has one. A field is constrained
    by its type alone when that is bool or a choice (`Literal`); a number (or list of numbers)
    needs an `Interval`, a string (or list or mapping of strings) a `Pattern`."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        name, tp = f"{where}{f.name}", hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += unconstrained(tp, f"{name}.")
            continue
        leaves: set[type] = set()
        todo = [tp]
        while todo:
            t = todo.pop()
            origin = typing.get_origin(t)
            if origin is typing.Literal:
                continue
            if origin in (list, dict, typing.Union) or isinstance(t, type(int | str)):
                todo += typing.get_args(t)
            else:
                leaves.add(t)
        meta = f.metadata
        ok = all(
            t is bool
            or (t in (int, float) and isinstance(meta.get("interval"), params.Interval))
            or (t is str and isinstance(meta.get("pattern"), params.Pattern))
            for t in leaves
        )
        if not ok:
            out.append(name)
    return out


def test_every_field_declares_its_constraint():
    assert unconstrained(params.Params) == []


def test_the_constraint_walk_flags_undeclared_fields():
    import dataclasses
    from typing import Literal

    @dataclasses.dataclass(frozen=True)
    class Inner:
        n: int = 3  # no interval
        p: str = params.text("x")

    @dataclasses.dataclass(frozen=True)
    class Section:
        a: int = params.ranged(1, 0)
        b: float = 0.5  # no interval
        c: Literal["x", "y"] = "x"
        d: str = "free"  # no pattern
        e: list[str] = dataclasses.field(default_factory=list)  # no pattern
        f: bool = True
        g: float | Literal["none"] = "none"  # a number beside the choice: no interval
        inner: Inner = dataclasses.field(default_factory=Inner)

    assert unconstrained(Section) == ["b", "d", "e", "g", "inner.n"]


def test_choices_repeat_the_modules_that_implement_them():
    """params names the choices that core implements; the two lists cannot drift apart."""
    import typing

    from dermai.core import ood, tta

    hints = typing.get_type_hints(params.EvaluateParams)
    assert set(typing.get_args(hints["ood_method"])) == set(ood.METHODS)
    assert set(typing.get_args(hints["ood_space"])) == set(ood.SPACES)
    assert set(typing.get_args(hints["tta"])) == set(tta.MODES)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"evaluate": {"ood_method": "mahalanobs"}}, "evaluate.ood_method='mahalanobs'"),
        ({"evaluate": {"ood_space": "pixels"}}, "evaluate.ood_space='pixels'"),
        ({"evaluate": {"ood_keep": 3.0}}, "evaluate.ood_keep=3.0"),
        ({"evaluate": {"ood_keep": 0}}, "evaluate.ood_keep=0"),
        ({"evaluate": {"ood_components": -5}}, "evaluate.ood_components=-5"),
        ({"evaluate": {"tta": "dihedral"}}, "model.image_height=150"),  # 150 x 200
        (
            {"evaluate": {"operating_point": {"target": "melanoma"}}},
            "evaluate.operating_point.target='melanoma' is not in base.classes",
        ),
        ({"evaluate": {"operating_point": {"target": "m el"}}}, "operating_point.target='m el'"),
        ({"evaluate": {"operating_point": {"recall": 0}}}, "evaluate.operating_point.recall=0"),
        ({"evaluate": {"operating_point": {"recall": 1.5}}}, "operating_point.recall=1.5"),
        ({"split": {"train": 0.9}}, "0.9 + 0.1 + 0.1 = 1.1"),
        ({"index": {"extensions": ["jpg"]}}, "index.extensions=['jpg']"),
        ({"index": {"raw_root": ""}}, "index.raw_root=''"),
        ({"index": {"manifest": {"path_template": "images/a.jpg"}}}, "path_template"),
        ({"index": {"class_map": {"scc": "bc"}}}, "index.class_map maps to ['bc']"),
        ({"base": {"age_edges": [60, 30]}}, "base.age_edges=[60, 30]"),
        ({"base": {"classes": ["nv", " "]}}, "base.classes=['nv', ' ']"),
        ({"sample": {"n_images": 10}}, "sample.n_images=10"),
        (
            {"model": {"colour_constancy": 6}, "tfrecords": {"encoding": "original"}},
            "model.colour_constancy=6.0",
        ),
    ],
)
def test_each_constraint_fails_on_load_with_a_one_line_error_naming_the_param(raw, named):
    with pytest.raises(DermaiError) as info:
        params.parse(raw)
    message = str(info.value)
    assert message.startswith("params: ") and "\n" not in message and named in message


@pytest.mark.parametrize(
    "raw",
    [
        {"split": {"train": 0.6, "val": 0.2, "test": 0.2}},
        {"split": {"train": 0.7, "val": 0.15, "test": 0.15}},  # 1 in floating point, almost
        {"evaluate": {"tta": "dihedral"}, "model": {"image_height": 64, "image_width": 64}},
        {"evaluate": {"operating_point": {"target": "mel", "recall": 1.0}}},
        {"evaluate": {"operating_point": {"target": "x", "recall": 0.5}}, "base": {"classes": []}},
        {"index": {"class_map": {"scc": "bcc", "unk": "drop"}}},
        {"index": {"class_map": {"scc": "anything"}}, "base": {"classes": []}},
        {"index": {"manifest": {"age": "", "source": ""}}},  # optional columns: none
    ],
)
def test_consistent_params_pass_the_cross_checks(raw):
    params.parse(raw)


def test_split_folds_1_is_refused_with_a_one_line_message():
    with pytest.raises(DermaiError, match=r"split.folds=1 is no cross-validation") as err:
        params.parse({"split": {"folds": 1}})
    assert "\n" not in str(err.value) and "-S split.folds=5" in str(err.value)


@pytest.mark.parametrize("folds", [-1, [0, 1, 2, 3, 4], "5", True])
def test_split_folds_is_a_count_of_at_least_0(folds):
    """A negative count, and the list form of before (`[0,1,2,3,4]`), are refused."""
    with pytest.raises(DermaiError, match="split.folds"):
        params.parse({"split": {"folds": folds}})


def test_split_folds_count_the_folds():
    assert params.parse({"split": {"folds": 5}}).split.folds == 5
    assert params.parse({"split": {"folds": 2}}).split.folds == 2
    assert params.parse({}).split.folds == 0
