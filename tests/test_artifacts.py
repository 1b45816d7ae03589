"""ecg_ray.artifacts (json_safe, provenance, Run), the source registry and the table renderer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_ray import CLASS_KEYS, HEADLINE
from ecg_ray.artifacts import Run, json_safe, provenance
from ecg_ray.data.errors import DataError
from ecg_ray.data.sources import NAMES, get_source
from ecg_ray.tables import render
from ecg_ray.training.augment import augment_label, parse_augment


def test_json_safe_is_strict_json_unless_told():
    value = {1: (np.float32(0.5), np.int64(2), float("nan"), pd.NA, Path("/x")), "a": np.array([1.0, np.inf])}
    assert json_safe(value) == {"1": [0.5, 2, None, None, "/x"], "a": [1.0, None]}
    json.dumps(json_safe(value), allow_nan=False)
    assert math.isnan(json_safe({"m": float("nan")}, strict=False)["m"])


def test_provenance_and_run_folder(tmp_path):
    p = provenance("abc", command="ecg-ray train")
    assert p["config_hash"] == "abc" and p["command"] == "ecg-ray train" and p["packages"]["numpy"] == np.__version__
    run = Run(tmp_path)
    assert not Run.holds(tmp_path) and run.checkpoint is None and run.final is None
    run.write({"config": {"seed": 1}, "final_metrics": {HEADLINE: 0.5}}, [{"epoch": 0}])
    assert Run.holds(tmp_path) and run.config == {"seed": 1} and run.history == [{"epoch": 0}]
    (tmp_path / Run.HISTORY).unlink()
    assert run.history == [{HEADLINE: 0.5}]


def test_source_registry():
    assert NAMES == ("cinc2017", "mitbih") and CLASS_KEYS[-1] == "noisy"
    assert get_source("mitbih").group_of("100_w0007") == "100" and get_source("cinc2017").group_of("A00001") == "A00001"
    assert get_source("mitbih").grouped and not get_source("cinc2017").grouped
    with pytest.raises(DataError, match="unknown source"):
        get_source("ptbxl")


def test_one_augment_parser():
    assert parse_augment("jitter+cutout") == parse_augment("jitter,cutout") == ["jitter", "cutout"]
    assert parse_augment(None) == parse_augment("none") == []
    assert augment_label(parse_augment("all")) == "all" and augment_label(["cutout", "jitter"]) == "jitter+cutout"


def test_render_markdown_of_strings_has_plain_separators():
    assert render(pd.DataFrame({"a": ["x"], "b": ["1.0"]}), "markdown") == "| a | b |\n|---|---|\n| x | 1.0 |"
