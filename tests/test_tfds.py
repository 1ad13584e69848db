"""Meta-Dataset through tensorflow-datasets: Meta-Dataset's own TFDS build (md_tfds), read
without TensorFlow, and the catalog datasets converted by `metadataset from-tfds` with the
official class splits. The TFDS directories are built by the real tensorflow-datasets in
.venv-tfds (tests/tfds_builders.py), in a subprocess: TensorFlow never enters this process."""
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from metadataset import tfds
from metadataset.__main__ import main
from metadataset.errors import MetaDatasetError

ROOT = Path(__file__).resolve().parents[1]
TFDS_PYTHON = Path(os.environ.get("RINGBENCH_TFDS_VENV", ROOT / ".venv-tfds")) / "bin" / "python"


def build(what: str, data_dir: Path) -> Path:
    assert TFDS_PYTHON.is_file(), f"{TFDS_PYTHON} missing: run bash scripts/setup_env.sh"
    out = subprocess.run([str(TFDS_PYTHON), str(ROOT / "tests" / "tfds_builders.py"), what, str(data_dir)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return data_dir


@pytest.fixture(scope="module")
def md_tfds_dir(tmp_path_factory) -> Path:
    return build("md_tfds", tmp_path_factory.mktemp("md_tfds"))


def pixel(data: bytes) -> tuple:
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))


def test_md_tfds_build_reads_class_by_class(md_tfds_dir):
    """Each class's slice, across shard boundaries, holds exactly that class's images in order:
    the builder stamps (label, index) into each image's corner."""
    dtd = tfds.open_source(md_tfds_dir, "dtd")
    assert dtd.spec.classes_per_split == {"TRAIN": 4, "VALID": 2, "TEST": 2} and len(dtd.files) == 3
    assert len({(a, b) for a, b in zip(dtd.starts, dtd.starts[1:])}) == 3
    crossing = [c for c, (a, b) in dtd.slices.items() if any(a < s < b for s in dtd.starts)]
    assert crossing, "no class spans two shards: the test would not exercise the shard arithmetic"
    for c in range(8):
        images = dtd.read_class(c)
        assert len(images) == 3 + c % 3
        for k, data in enumerate(images):
            r, g, _ = pixel(data)
            assert abs(r - 20 * c) <= 12 and abs(g - 40 * k) <= 12, (c, k, r, g)
    omni = tfds.open_source(md_tfds_dir, "omniglot")
    assert omni.spec.kind == "BiLevelDatasetSpecification"
    assert [list(r) for r in omni.spec.superclasses["TRAIN"]] == [[0, 1], [2, 3, 4]]
    assert [len(omni.read_class(c)) for c in range(9)] == [2 + c % 2 for c in range(9)]
    assert tfds.available(md_tfds_dir) == ["dtd", "omniglot"]


def tiny_checkpoint(path):
    from test_metadataset import tiny_checkpoint as make
    make(path)


def test_both_protocols_run_on_an_md_tfds_build(md_tfds_dir, tmp_path, capsys):
    tiny_checkpoint(tmp_path / "c.pt")
    common = ["--ckpt", str(tmp_path / "c.pt"), "--tfds-dir", str(md_tfds_dir), "--results", str(tmp_path / "r"),
              "--workers", "0"]
    assert main(["linear", *common, "--test-fraction", "0.34"]) == 0
    out = capsys.readouterr().out
    assert "2 source(s)" in out and "dtd, omniglot" in out
    rec = json.loads((tmp_path / "r/tiny_run/metadataset/linear_dtd.json").read_text())
    assert rec["protocol"]["classes_n"] == 8 and rec["data_format"].startswith("md_tfds v1")
    assert main(["episodic", "--head", "prototype", "--episodes", "5", "--ways", "2", "--shots", "1",
                 "--queries", "1", *common, "--domains", "dtd"]) == 0
    rec = json.loads((tmp_path / "r/tiny_run/metadataset/episodic_prototype_dtd_2way1shot1query.json").read_text())
    assert rec["metrics"]["episodes"] == 5 and rec["records_dir"] == str(md_tfds_dir.resolve())
    assert main(["linear", *common, "--domains", "omniglot", "--md-version", "v2", "--run", "v2"]) == 0


def mutate_copy(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    change(dst / "meta_dataset" / "dtd" / "1.0.0")
    return dst


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


BAD = {
    "missing data_dir": (None, ["--tfds-dir", "{tmp}/nowhere"], "TFDS data_dir not found"),
    "missing version": (lambda d: d.rename(d.with_name("0.9.0")), [], "version 1.0.0 of md_tfds not found (found: 0.9.0)"),
    "unknown source": (None, ["--domains", "fungi"], "source 'fungi' not found in the md_tfds build"),
    "no label feature": (lambda d: _edit_json(d / "features.json", lambda f: f["featuresDict"]["features"].pop("label")),
                         [], "features.json: no label feature"),
    "truncated shard": (lambda d: (d / "meta_dataset-all_classes.tfrecord-00001-of-00003").write_bytes(
        (d / "meta_dataset-all_classes.tfrecord-00001-of-00003").read_bytes()[:-3]), [], "truncated TFRecord"),
    "slices off the shards": (lambda d: _edit_json(d / "dataset_info.json", lambda i: i["splits"][0].update(
        shardLengths=["10", "11", "9"])), [], "does not match the shards (30 examples)"),
    "shard count off": (lambda d: _edit_json(d / "metadata.json", lambda m: m["relative_class_slices"]["v1"]["test"].update(
        {"1": [26, 31]})), [], "class 7's slice [26, 31) does not match"),
    "no v2": (lambda d: _edit_json(d / "metadata.json", lambda m: m["dataset_specs"].pop("v2")), ["--md-version", "v2"],
              "has no Meta-Dataset v2 spec"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_md_tfds_input_is_one_line_and_writes_nothing(md_tfds_dir, tmp_path, capsys, case):
    change, extra, message = BAD[case]
    data = mutate_copy(md_tfds_dir, tmp_path / "data", change) if change else md_tfds_dir
    tiny_checkpoint(tmp_path / "c.pt")
    argv = ["linear", "--ckpt", str(tmp_path / "c.pt"), "--tfds-dir", str(data), "--results", str(tmp_path / "r"),
            "--workers", "0", "--domains", "dtd"]
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    if "--tfds-dir" in extra:
        argv[argv.index("--tfds-dir") + 1] = extra[1]
        extra = extra[2:]
    if "--domains" in extra:
        argv[argv.index("--domains") + 1] = extra[1]
        extra = extra[2:]
    capsys.readouterr()
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_a_label_out_of_its_slice_is_caught(md_tfds_dir, tmp_path):
    """Slices shifted by one image (counts still matching the spec) put a neighbour's record in
    a class: the per-record label check catches it."""
    def shift(d):
        def edit(m):
            for split in m["relative_class_slices"]["v1"].values():
                for k, (a, b) in split.items():
                    split[k] = [a + 1, b + 1] if b < 31 else [a, b]
        _edit_json(d / "metadata.json", edit)
    data = mutate_copy(md_tfds_dir, tmp_path / "data", shift)
    src = tfds.open_source(data, "dtd")
    with pytest.raises(MetaDatasetError, match="has label 1, expected 0"):
        src.read_class(0)
