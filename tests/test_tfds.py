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


# ---------------------------------------------------------------- catalog datasets -> records

SPLIT_FILES = ROOT / "tests" / "data" / "md_splits"  # meta_dataset/dataset_conversion/splits/, unchanged
# Omniglot's evaluation alphabets (images_evaluation.zip of brendenlake/omniglot): Meta-Dataset's test split
OMNIGLOT_EVALUATION = {
    "Angelic", "Atemayar_Qelisayer", "Atlantean", "Aurek-Besh", "Avesta", "Ge_ez", "Glagolitic", "Gurmukhi",
    "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)", "Oriya", "Sylheti",
    "Syriac_(Serto)", "Tengwar", "Tibetan", "ULOG"}
CONVERTIBLE = ("omniglot", "dtd", "vgg_flower", "cu_birds", "quickdraw", "mscoco", "ilsvrc_2012")


def convert_in_tfds_env(jobs) -> list:
    out = subprocess.run([str(TFDS_PYTHON), str(ROOT / "tests" / "tfds_builders.py"), "convert",
                          json.dumps([[str(a) for a in job] for job in jobs])],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """The catalog datasets, each converted (one TensorFlow process for all of them)."""
    base = tmp_path_factory.mktemp("catalog")
    build("catalog", base / "tfds")
    assert convert_in_tfds_env([(base / "tfds", s, base / "records" / s) for s in CONVERTIBLE]) == [None] * 7
    return base


def split_names(spec) -> dict:
    return {split: [spec.class_names[c] for c in spec.classes(split)] for split in ("TRAIN", "VALID", "TEST")}


@pytest.mark.parametrize("source", ["dtd", "vgg_flower", "cu_birds", "quickdraw", "mscoco"])
def test_converted_split_is_the_official_split_file(catalog, source):
    """The official converter numbers classes train, valid, test in its splits file's order."""
    from metadataset.records import Source
    spec = Source(catalog / "records" / source).spec
    official = json.loads((SPLIT_FILES / f"{source}_splits.json").read_text())
    assert split_names(spec) == {"TRAIN": official["train"], "VALID": official["valid"], "TEST": official["test"]}
    counts = {"dtd": (33, 7, 7), "vgg_flower": (71, 15, 16), "cu_birds": (140, 30, 30), "quickdraw": (241, 52, 52),
              "mscoco": (0, 40, 40)}[source]
    assert tuple(spec.classes_per_split[s] for s in ("TRAIN", "VALID", "TEST")) == counts


def test_omniglot_split_follows_its_rule_and_images_are_inverted(catalog):
    """Train: the background alphabets but the 5 with the fewest characters; valid: those 5;
    test: the evaluation alphabets. 25/5/20 alphabets."""
    from metadataset.records import Source
    src = Source(catalog / "records" / "omniglot")
    raw = json.loads((catalog / "records" / "omniglot" / "dataset_spec.json").read_text())
    alphabet = {int(s): n for s, n in raw["superclass_names"].items()}
    sizes = {alphabet[int(s)]: n for s, n in raw["classes_per_superclass"].items()}
    supers = {split: [alphabet[i] for i in range(a, a + k)] for split, (a, k) in
              zip(("TRAIN", "VALID", "TEST"), ((0, 25), (25, 5), (30, 20)))}
    assert raw["superclasses_per_split"] == {"TRAIN": 25, "VALID": 5, "TEST": 20}
    assert set(supers["TEST"]) == OMNIGLOT_EVALUATION
    background = sorted(supers["TRAIN"] + supers["VALID"], key=lambda a: (sizes[a], a))
    assert set(supers["VALID"]) == set(background[:5]) and max(sizes[a] for a in supers["VALID"]) <= min(
        sizes[a] for a in supers["TRAIN"])
    assert sum(sizes.values()) == 1623 and src.spec.num_classes == 1623
    # the builder's images are uniformly dark (30): stored inverted, as RGB JPEG
    (image,) = src.read_class(0)
    assert Image.open(io.BytesIO(image)).format == "JPEG"
    assert all(abs(v - 225) <= 2 for v in pixel(image))


def test_imagenet_split_is_the_wordnet_split_and_duplicates_are_skipped(catalog):
    from metadataset.records import Source
    src = Source(catalog / "records" / "ilsvrc_2012")
    spec = src.spec
    assert spec.kind == "HierarchicalDatasetSpecification"
    assert [spec.classes_per_split[s] for s in ("TRAIN", "VALID", "TEST")] == [712, 158, 130]
    raw = json.loads((catalog / "records" / "ilsvrc_2012" / "dataset_spec.json").read_text())
    roots = {split: [n["wn_id"] for n in nodes if not n["parents_ids"]] for split, nodes in raw["split_subgraphs"].items()}
    assert roots["VALID"] == ["n02075296"] and roots["TEST"] == ["n03183080"]  # carnivore; device
    goldfinch = next(c for c, n in spec.class_names.items() if n == "n01531178")
    assert len(src.read_class(goldfinch)) == 2  # its third TFDS image is an official CUBirds duplicate
    # internal nodes count the images of the leaves they span
    assert raw["images_per_class"]["VALID"]["n02075296"] == 2 * 158
    assert spec.dag["TEST"] and max(len(d) for d in spec.dag["TEST"]) == 130


def test_mscoco_crops_are_the_official_1_2x_boxes(catalog):
    from metadataset.records import Source
    src = Source(catalog / "records" / "mscoco")
    # image 1 (60x40 px) holds boxes (ymin, xmin, ymax, xmax) of categories 2 and 3 (sorted names):
    # (.1, .2, .7, .55): x 12, y 4, w 21, h 24 -> 1.2x about the centre: x 9.9, y 1.6, w 25.2, h 28.8
    #   -> PIL box [round(9.4), round(1.1), round(34.6) + 1, round(29.9) + 1) = [9, 1, 36, 31): 27 x 30
    # (.05, .5, .95, .95): x 30, y 2, w 27, h 36 -> x 27.3, y -1.6, w 32.4, h 43.2
    #   -> [27, 0, 60, 40) after clipping to the image: 33 x 40
    names = sorted(src.spec.class_names.values())
    for category, size in ((names[2], (27, 30)), (names[3], (33, 40))):
        cid = next(c for c, n in src.spec.class_names.items() if n == category)
        (crop,) = src.read_class(cid)
        assert Image.open(io.BytesIO(crop)).size == size, category


def test_both_protocols_run_on_converted_catalog_data(catalog, tmp_path, capsys):
    tiny_checkpoint(tmp_path / "c.pt")
    common = ["--ckpt", str(tmp_path / "c.pt"), "--records", str(catalog / "records"), "--results", str(tmp_path / "r"),
              "--workers", "0"]
    assert main(["linear", *common, "--domains", "dtd", "--test-fraction", "0.5"]) == 0
    assert main(["episodic", "--head", "prototype", "--episodes", "3", *common, "--domains", "ilsvrc_2012",
                 "--shots", "1", "--queries", "1"]) == 0  # the DAG sampler on the real WordNet test graph
    rec = json.loads((tmp_path / "r/tiny_run/metadataset/episodic_prototype_ilsvrc_2012_vway1shot1query.json").read_text())
    assert rec["metrics"]["episodes"] == 3


def test_from_tfds_command_and_its_bad_input(catalog, tmp_path, capsys):
    """The command runs the converter in .venv-tfds; each bad input is one line, exit 2, and no output."""
    data = catalog / "tfds"
    assert main(["from-tfds", "--data-dir", str(data), "--source", "dtd", str(tmp_path / "dtd")]) == 0
    assert "47 classes" in capsys.readouterr().out and (tmp_path / "dtd" / "dataset_spec.json").is_file()
    # copies whose features lack the label, whose shard is cut short
    bad = tmp_path / "bad"
    shutil.copytree(data / "dtd", bad / "nolabel" / "dtd")
    _edit_json(bad / "nolabel/dtd/3.0.1/features.json", lambda f: f["featuresDict"]["features"].pop("label"))
    shutil.copytree(data / "caltech_birds2011", bad / "cut" / "caltech_birds2011")
    shard = next((bad / "cut/caltech_birds2011/0.2.0").glob("*train.tfrecord*"))
    shard.write_bytes(shard.read_bytes()[:-100])
    # the errors found before TensorFlow starts, through the command
    for data_dir, source, message in [(tmp_path / "nowhere", "dtd", "TFDS data_dir not found"),
                                      (bad, "dtd", "TFDS dataset 'dtd' not prepared"),
                                      (data, "imagenet", "unknown source 'imagenet'"),
                                      (data, "fungi", "convert_datasets_to_records --dataset=fungi")]:
        capsys.readouterr()
        assert main(["from-tfds", "--data-dir", str(data_dir), "--source", source, str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["from-tfds", "--data-dir", str(bad / "cut"), "--source", "cu_birds", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot read TFDS dataset caltech_birds2011" in err and err.count("\n") == 1, err
    # those TensorFlow finds, in one TensorFlow process; one line each, and no output left behind
    (bad / "old" / "omniglot" / "x").mkdir(parents=True)
    (bad / "old" / "omniglot" / "x" / "dataset_info.json").write_text("{}")
    cases = [(bad / "nolabel", "dtd", "lacks the feature(s) label"),
             (bad / "cut", "cu_birds", "cannot read TFDS dataset caltech_birds2011 (DataLossError"),
             (bad / "old", "omniglot", "no prepared version")]
    errors = convert_in_tfds_env([(d, s, tmp_path / "out" / s) for d, s, _ in cases])
    for (_, source, message), err in zip(cases, errors):
        assert err and message in err and "\n" not in err, err
        assert not (tmp_path / "out" / source).exists() and not (tmp_path / "out" / f"{source}.partial").exists()
    assert not (tmp_path / "out").exists()
