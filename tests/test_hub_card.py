"""The Hub-style card pretrained/cpc_mnist64_color.md is what tools/publish_pretrained.py makes from the
committed JSON and checkpoint (so it cannot drift), and its front matter is YAML naming each shipped
file with its real sha256 and size."""
import json
import os
import shutil

import pytest
import yaml

from src import checkpoint
from tests.conftest import REPO
from tools import publish_pretrained

SHIPPED = os.path.join(REPO, "pretrained")
pytestmark = pytest.mark.skipif(not os.path.isdir(SHIPPED), reason="no pretrained/ folder in this checkout")


def _json():
    with open(os.path.join(SHIPPED, "cpc_mnist64_color.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _committed_card():
    with open(os.path.join(SHIPPED, publish_pretrained.CARD), encoding="utf-8") as handle:
        return handle.read()


def _hparams():
    return checkpoint.load(os.path.join(SHIPPED, "cpc_mnist64_color.ckpt"))[1]["hparams"]


def test_committed_card_is_what_the_generator_makes():
    assert _committed_card() == publish_pretrained.hub_card(_json(), _hparams()), \
        "pretrained/cpc_mnist64_color.md is stale: run python -m tools.publish_pretrained --card_only"


def test_front_matter_names_the_shipped_files_and_figures():
    text = _committed_card()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    card = _json()
    assets = {a["net"]: a for a in front["asset"]}
    assert sorted(assets) == sorted(card["files"])
    for asset in assets.values():
        path = os.path.join(SHIPPED, asset["asset-link"])
        assert asset["asset-sha256"] == checkpoint.sha256_of(path) == open(path + ".sha256").read().split()[0]
        assert asset["asset-size"] == os.path.getsize(path)
    assert front["accuracy"] == card["figures"]["classifier"]["test_digit_accuracy"]
    assert front["evaluation"]["contrastive_test_accuracy"] == card["figures"]["contrastive"]["test_accuracy"]
    assert front["input-shape"] == [1, 3, 64, 64] and front["mindspore-version"].startswith("2.")


def test_card_only_remakes_the_card_from_a_changed_json(tmp_path):
    folder = tmp_path / "pretrained"
    shutil.copytree(SHIPPED, folder)
    (folder / publish_pretrained.CARD).unlink()
    publish_pretrained.main(["--card_only", "--output_dir", str(folder)])
    assert (folder / publish_pretrained.CARD).read_text(encoding="utf-8") == _committed_card()
    card = _json()
    card["figures"]["classifier"]["test_digit_accuracy"] = 0.5
    card["mindspore_version"] = "9.9.9"
    (folder / "cpc_mnist64_color.json").write_text(json.dumps(card), encoding="utf-8")
    publish_pretrained.main(["--card_only", "--output_dir", str(folder)])
    front = yaml.safe_load((folder / publish_pretrained.CARD).read_text(encoding="utf-8").split("---\n")[1])
    assert front["accuracy"] == 0.5 and front["mindspore-version"] == "9.9.9"
