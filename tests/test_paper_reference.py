"""Paper mode against the reference's own checkout (`make test-reference`): its prompt files and its split, read at
run time from the folder the user names, never shipped. The split is written out again here from the facts of the
reference's procedure (CJK characters or a non-English `langdetect` verdict drop a prompt, pandas' `sample(frac=1)`
with seed 42 for harmful and 43 for harmless, rows 250–300 evaluated), and compared prompt by prompt."""
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from safety_study.config import checkpoint_abliteration, config_from_dict, load_config, to_dict
from safety_study.core import StudyError
from safety_study.pipeline import PromptSplits, direction_texts
from safety_study.prompts import reference_prompts
from safety_study.runner import checkpoint_parameters, study_prompts

pytestmark = pytest.mark.reference
ROOT = Path(__file__).resolve().parents[1]
REFERENCE_CODE = Path(os.environ.get("SAFETY_STUDY_REFERENCE_CODE") or ROOT.parent / "shared" / "reference-code")
SEEDS = {"harmful": 42, "harmless": 43}


@pytest.fixture(scope="module")
def ref_dir() -> Path:
    assert (REFERENCE_CODE / "data" / "harmful.parquet").is_file(), (
        f"the reference's checkout is not at {REFERENCE_CODE}: set SAFETY_STUDY_REFERENCE_CODE")
    return REFERENCE_CODE


def written_out_split(path: Path, seed: int) -> list[str]:
    "The reference's evaluation prompts, from the description of its split procedure (langdetect seeded at 0)."
    from langdetect import DetectorFactory, LangDetectException, detect
    DetectorFactory.seed = 0

    def english(text):
        if re.search("[\u4e00-\u9fff\u3040-\u30ff\uac00-\ud7af]", text): return False
        try: return detect(text) == "en"
        except LangDetectException: return False
    df = pd.read_parquet(path)
    kept = df[df[df.columns[0]].apply(english)].sample(frac=1, random_state=seed).reset_index(drop=True)
    return kept.iloc[250:300, 0].tolist()


def paper_config(ref_dir, **extra) -> dict:
    return {"name": "paper-ref", "checkpoints": [{"name": "toy", "model": "toy:toy-refusals"}],
            "prompts": {"source": "reference"}, "reference_dir": str(ref_dir),
            "abliteration": {"paper_mode": True, "select": False, "layer_fraction": 1.0, "n_validation": 0},
            "judges": ["regex_paper"], **extra}


def test_evaluation_prompts_are_the_reference_split(ref_dir):
    table = reference_prompts(ref_dir)
    for label, seed in SEEDS.items():
        want = written_out_split(ref_dir / "data" / f"{label}.parquet", seed)
        got = table[(table.label == label) & (table.split == "eval")]
        assert len(got) == 50 and set(got.prompt) == set(want), label
        file = pd.read_parquet(ref_dir / "data" / f"{label}.parquet").iloc[:, 0].tolist()
        assert table[table.label == label].prompt.tolist() == file     # every row of the file, in its order
    assert len(reference_prompts(ref_dir, n_eval=10).query("split == 'eval'")) == 20


def test_direction_is_the_whole_files_in_file_order(ref_dir):
    cfg = config_from_dict(paper_config(ref_dir))
    params = checkpoint_parameters(cfg, "toy")
    splits = PromptSplits(study_prompts(params["prompts"], seed=cfg.seed, reference_dir=params["reference_dir"]))
    settings = checkpoint_abliteration(cfg, "toy")
    for label in SEEDS:
        file = pd.read_parquet(ref_dir / "data" / f"{label}.parquet").iloc[:, 0].tolist()
        on = direction_texts(splits, label, settings.paper_setting("direction_on_eval"))
        assert on == file, label                                       # CJK prompts and empty strings included
        off = direction_texts(splits, label, False)
        assert len(off) == len(file) - 50 and off != file              # the switch off: evaluation prompts left out
    assert len(file) == 640 and any(re.search("[\u4e00-\u9fff]", t) for t in file)


def test_a_missing_or_wrong_reference_dir_is_a_clear_error(ref_dir, tmp_path):
    data = paper_config(ref_dir)
    with pytest.raises(StudyError, match="reference_dir must name a checkout"):
        config_from_dict({k: v for k, v in data.items() if k != "reference_dir"})
    with pytest.raises(StudyError, match="is not a checkout of the reference: it has no"):
        config_from_dict({**data, "reference_dir": str(tmp_path)})
    with pytest.raises(StudyError, match="is not a folder"):
        config_from_dict({**data, "reference_dir": str(tmp_path / "nowhere")})
    with pytest.raises(StudyError, match="evaluation prompts per class: use 1..50"):
        reference_prompts(ref_dir, n_eval=60)


def test_reference_dir_on_the_command_line(ref_dir, tmp_path):
    from safety_study import cli
    path = tmp_path / "paper.yaml"
    data = paper_config(ref_dir)
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "reference_dir"}), encoding="utf-8")
    with pytest.raises(StudyError, match="reference_dir must name"):
        load_config(path)
    cfg = load_config(path, {"reference_dir": str(ref_dir)})
    assert Path(cfg.reference_dir) == ref_dir and to_dict(cfg)["prompts"]["source"] == "reference"
    args = cli.build_parser().parse_args(["run", str(path), "--reference-dir", str(ref_dir)])
    assert args.reference_dir == str(ref_dir)
