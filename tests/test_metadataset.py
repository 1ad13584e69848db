"""Meta-Dataset harness: record format (byte for byte), reader, converter, splits, the episode
sampler's rules over thousands of episodes, error handling, and both protocols end to end."""
import io
import json
import struct
from pathlib import Path

import formats
import numpy as np
import pytest
import torch
from PIL import Image

from metadataset import convert, example, heads, tfrecord
from metadataset import spec as spec_mod
from metadataset.__main__ import main
from metadataset.episodes import EpisodeConfig, Sampler, rng_for
from metadataset.errors import MetaDatasetError
from metadataset.records import Source
from pretrain import checkpoint, models

# ---------------------------------------------------------------- format, byte for byte

def crc32c_reference(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): independent of the package."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def mask(crc: int) -> int:  # TensorFlow's python_io documentation
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_crc32c_published_check_values():
    assert crc32c_reference(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720 family)
    assert crc32c_reference(bytes(32)) == 0x8A9136AA    # RFC 3720 B.4: 32 bytes of zeros
    assert tfrecord.masked_crc(b"123456789") == mask(0xE3069283)
    assert tfrecord.masked_crc(b"") == 0xA282EAD8       # crc32c("") = 0: the mask delta itself


def test_tf_example_wire_format_byte_for_byte():
    # Example{features{feature{"image": bytes_list ["ab"]}, feature{"label": int64_list [3]}}}, derived by hand
    expected = bytes.fromhex(
        "0a21"                                   # Example.features, 33 bytes
        "0a0f" "0a05" + b"image".hex() + "1206" "0a04" "0a02" + b"ab".hex() +  # map entry: key, Feature{bytes_list{value}}
        "0a0e" "0a05" + b"label".hex() + "1205" "1a03" "0a01" "03")            # map entry: key, Feature{int64_list{packed}}
    assert example.encode({"image": b"ab", "label": 3}) == expected
    assert example.decode(expected) == {"image": [b"ab"], "label": [3]}
    both = example.decode(example.encode({"n": [-1, 2**40], "f": [0.5, -2.0], "b": [b"", b"x"]}))
    assert both == {"n": [-1, 2**40], "f": [0.5, -2.0], "b": [b"", b"x"]}
    unpacked = bytes.fromhex("0a0d" "0a0b" "0a01" + b"n".hex() + "1206" "1a04" "0805" "0807")
    assert example.decode(unpacked) == {"n": [5, 7]}  # an unpacked Int64List decodes too


def test_converted_file_matches_the_published_framing(tmp_path):
    tree = tmp_path / "folder"
    write_tree(tree, classes=3, per_class=2)
    convert.convert(tree, tmp_path / "src", "tiny", (0.0, 0.0, 1.0))
    blob = (tmp_path / "src" / "0.tfrecords").read_bytes()
    length = struct.unpack("<Q", blob[:8])[0]
    data = blob[12:12 + length]
    assert struct.unpack("<I", blob[8:12])[0] == mask(crc32c_reference(blob[:8]))
    assert struct.unpack("<I", blob[12 + length:16 + length])[0] == mask(crc32c_reference(data))
    first = example.decode(data)
    assert first["label"] == [0] and first["image"][0] == (tree / "c0" / "0.jpg").read_bytes()
    assert tfrecord.frame(b"") == bytes(8) + struct.pack("<I", mask(crc32c_reference(bytes(8)))) + bytes.fromhex("d8ea82a2")


# ---------------------------------------------------------------- converter and reader

def write_tree(root, classes=10, per_class=4, size=12, png_class=None):
    """ImageFolder tree; class i's images are noise around colour i (JPEG, or PNG for png_class)."""
    imgs = formats.images(classes * per_class, size, seed=3, classes=classes)
    for c in range(classes):
        d = root / f"c{c}"
        d.mkdir(parents=True)
        for j in range(per_class):
            fmt = "PNG" if c == png_class else "JPEG"
            Image.fromarray(imgs[j * classes + c]).save(d / f"{j}.{'png' if fmt == 'PNG' else 'jpg'}", format=fmt)


def test_convert_round_trip_and_class_splits(tmp_path):
    tree = tmp_path / "folder"
    write_tree(tree, classes=10, per_class=4, png_class=7)
    spec = convert.convert(tree, tmp_path / "src", "tiny", (0.6, 0.2, 0.2), seed=5)
    loaded = spec_mod.load(tmp_path / "src")
    assert loaded == spec and loaded.classes_per_split == {"TRAIN": 6, "VALID": 2, "TEST": 2}
    assert list(loaded.classes("TRAIN")) == list(range(6)) and list(loaded.classes("TEST")) == [8, 9]
    assert sorted(loaded.class_names.values()) == [f"c{i}" for i in range(10)]
    raw = json.loads((tmp_path / "src" / "dataset_spec.json").read_text())
    assert raw["__class__"] == "DatasetSpecification" and raw["file_pattern"] == "{}.tfrecords"
    src = Source(tmp_path / "src")
    for cid, cname in loaded.class_names.items():
        images = src.read_class(cid)
        assert len(images) == 4 == loaded.images_per_class[cid]
        files = sorted((tree / cname).iterdir())
        if cname == "c7":  # PNG is re-encoded as JPEG, like the official converter; pixels survive closely
            for blob, f in zip(images, files):
                assert Image.open(io.BytesIO(blob)).format == "JPEG"
                a = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), dtype=float)
                b = np.asarray(Image.open(f).convert("RGB"), dtype=float)
                assert a.shape == b.shape and np.abs(a.mean((0, 1)) - b.mean((0, 1))).max() < 4  # lossy on noise
        else:  # RGB JPEG files are stored byte for byte
            assert images == [f.read_bytes() for f in files]
    # the split is seeded: same seed, same classes per split; another seed, another split
    again = convert.convert(tree, tmp_path / "again", "tiny", (0.6, 0.2, 0.2), seed=5)
    other = convert.convert(tree, tmp_path / "other", "tiny", (0.6, 0.2, 0.2), seed=6)
    assert again.class_names == spec.class_names and other.class_names != spec.class_names


def test_bilevel_and_hierarchical_specs(tmp_path):
    bilevel = {"__class__": "BiLevelDatasetSpecification", "name": "omniglot", "file_pattern": "{}.tfrecords", "path": "",
               "superclasses_per_split": {"TRAIN": 1, "VALID": 1, "TEST": 2},
               "classes_per_superclass": {"0": 3, "1": 2, "2": 5, "3": 6},
               "images_per_class": {str(i): 20 for i in range(16)}, "class_names": {str(i): f"k{i}" for i in range(16)},
               "superclass_names": {str(i): f"a{i}" for i in range(4)}}
    (tmp_path / "dataset_spec.json").write_text(json.dumps(bilevel))
    s = spec_mod.load(tmp_path)
    assert s.classes_per_split == {"TRAIN": 3, "VALID": 2, "TEST": 11}
    assert s.classes("TEST") == range(5, 16) and s.superclasses["TEST"] == [range(5, 10), range(10, 16)]
    node = lambda wn, kids=(): {"wn_id": wn, "words": wn, "children_ids": list(kids), "parents_ids": []}  # noqa: E731
    dag = {"__class__": "HierarchicalDatasetSpecification", "name": "ilsvrc_2012", "file_pattern": "{}.tfrecords",
           "split_subgraphs": {"TRAIN": [node("n0", ["n1", "n2"]), node("n1"), node("n2")], "VALID": [],
                               "TEST": [node("n9", ["n3"]), node("n3")]},
           "class_names": {"0": "n1", "1": "n2", "2": "n3"}, "path": "",
           "images_per_class": {"TRAIN": {"n1": 5, "n2": 6, "n0": 11}, "VALID": {}, "TEST": {"n3": 7, "n9": 7}}}
    (tmp_path / "dataset_spec.json").write_text(json.dumps(dag))
    s = spec_mod.load(tmp_path)  # internal DAG nodes (n0, n9) are not classes
    assert s.classes_per_split == {"TRAIN": 2, "VALID": 0, "TEST": 1} and s.images_per_class == {0: 5, 1: 6, 2: 7}
    assert s.dag == {"TRAIN": [[0, 1]], "VALID": [], "TEST": [[0]]}
    dag["split_subgraphs"]["TEST"] = [node("n9", ["n3", "n7"]), node("n3")]
    (tmp_path / "dataset_spec.json").write_text(json.dumps(dag))
    with pytest.raises(MetaDatasetError, match="child n7 is not a node of the graph"):
        spec_mod.load(tmp_path)


def imagenet_like_dag():
    """A small WordNet-like DAG of one split: root -> animal (12 leaves: dog x6, cat x6 via
    'dog' and 'cat'), thing (3 leaves), and a shared leaf reachable from 'pet' and 'cat'."""
    edges = {"root": ["animal", "thing"], "animal": ["dog", "cat", "pet"], "dog": [f"d{i}" for i in range(6)],
             "cat": [f"c{i}" for i in range(6)], "pet": ["d0", "c0"], "thing": ["t0", "t1", "t2"]}
    leaves = sorted({k for kids in edges.values() for k in kids} - set(edges))
    nodes = [{"wn_id": wn, "words": wn, "children_ids": edges.get(wn, []), "parents_ids": []}
             for wn in sorted(set(edges) | set(leaves))]
    return nodes, leaves


def test_dag_nodes_span_their_leaves_as_the_official_get_spanning_leaves():
    nodes, leaves = imagenet_like_dag()
    spans = dict(zip(sorted(n["wn_id"] for n in nodes if n["children_ids"]),
                     spec_mod.spanned_leaves(nodes, Path("spec.json"), "TEST")))
    assert spans["root"] == leaves and len(spans["animal"]) == 12 and spans["pet"] == ["c0", "d0"]
    assert spans["thing"] == ["t0", "t1", "t2"] and spans["dog"] == [f"d{i}" for i in range(6)]


def test_dag_sampler_follows_the_official_rules():
    """Eligible nodes span 5..392 classes; an episode's classes are one eligible node's leaves
    (sub-sampled to 50 where more); every leaf is reachable; the same seed, the same episodes."""
    from metadataset.episodes import MAX_SPANNING_LEAVES_ELIGIBLE
    nodes, leaves = imagenet_like_dag()
    rel = {wn: i for i, wn in enumerate(leaves)}
    spans = [[rel[wn] for wn in span] for span in spec_mod.spanned_leaves(nodes, Path("s"), "TEST")]
    sampler = Sampler([30] * len(leaves), EpisodeConfig(), dag=spans)
    eligible = [set(s) for s in spans if 5 <= len(s) <= MAX_SPANNING_LEAVES_ELIGIBLE]
    assert sorted(map(len, eligible)) == [6, 6, 12, 15]  # root, animal, cat, dog; pet (2) and thing (3) are not
    seen = set()
    rng = np.random.RandomState(0)
    for _ in range(400):
        classes = sampler.sample_classes(rng)
        assert set(classes.tolist()) in eligible and 5 <= len(classes) <= 50
        seen |= set(classes.tolist())
    assert seen == set(range(len(leaves)))  # every class reachable
    a = [sampler.sample_description(np.random.RandomState(3)) for _ in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(a[0][:2], a[1][:2]))
    # a node spanning more than 50 classes gives 50 of them, drawn without replacement
    wide = Sampler([30] * 120, EpisodeConfig(), dag=[list(range(120))])
    got = wide.sample_classes(np.random.RandomState(1))
    assert len(got) == 50 == len(set(got.tolist())) and set(got.tolist()) <= set(range(120))
    with pytest.raises(MetaDatasetError, match="no node of the test split's DAG spans between 5 and 392"):
        Sampler([30] * 400, EpisodeConfig(), dag=[list(range(393)), [0, 1]])


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(images_per_class={"0": {"train": 3, "test": 2}, "1": 4}), "pools"),
    (lambda r: r.update(file_pattern="{}.rec"), "file_pattern must be one of"),
    (lambda r: r.pop("classes_per_split"), "lacks classes_per_split"),
    (lambda r: r.update(classes_per_split={"TRAIN": 1, "VALID": 0, "TEST": 5}), "must list class ids 0..5"),
    (lambda r: r.update(__class__="Nonsense"), "unsupported spec class"),
])
def test_bad_specs_are_one_line_errors_naming_the_file(tmp_path, change, message):
    raw = {"__class__": "DatasetSpecification", "name": "x", "file_pattern": "{}.tfrecords", "path": "",
           "classes_per_split": {"TRAIN": 1, "VALID": 0, "TEST": 1}, "images_per_class": {"0": 4, "1": 4},
           "class_names": {"0": "a", "1": "b"}}
    change(raw)
    (tmp_path / "dataset_spec.json").write_text(json.dumps(raw))
    with pytest.raises(MetaDatasetError, match=message) as err:
        spec_mod.load(tmp_path)
    assert str(tmp_path / "dataset_spec.json") in str(err.value) and "\n" not in str(err.value)


def test_corrupt_truncated_and_missing_records(tmp_path):
    write_tree(tmp_path / "folder", classes=3, per_class=3)
    convert.convert(tmp_path / "folder", tmp_path / "src", "tiny", (0.0, 0.0, 1.0))
    src = Source(tmp_path / "src")
    path = tmp_path / "src" / "1.tfrecords"
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[40] ^= 0x01  # inside the first record's data
    path.write_bytes(bytes(flipped))
    with pytest.raises(MetaDatasetError, match=r"1\.tfrecords: corrupt TFRecord \(record 0: data CRC mismatch\)"):
        src.read_class(1)
    flipped = bytearray(good)
    flipped[3] ^= 0x01  # the length field
    path.write_bytes(bytes(flipped))
    with pytest.raises(MetaDatasetError, match="record 0: length CRC mismatch"):
        src.read_class(1)
    path.write_bytes(good[:-3])
    with pytest.raises(MetaDatasetError, match="truncated TFRecord .record 2: data cut short"):
        src.read_class(1)
    path.write_bytes(good + good[:16])  # an extra record header, then nothing
    with pytest.raises(MetaDatasetError, match="truncated TFRecord"):
        src.read_class(1)
    tfrecord.write(path, [example.encode({"image": b"x", "label": 2})] * 3)
    with pytest.raises(MetaDatasetError, match="record 0 has label 2, expected class id 1"):
        src.read_class(1)
    tfrecord.write(path, [example.encode({"image": b"x", "label": 1})] * 2)
    with pytest.raises(MetaDatasetError, match="holds 2 images but dataset_spec.json says 3"):
        src.read_class(1)
    path.unlink()
    with pytest.raises(MetaDatasetError, match=r"1\.tfrecords: class file not found"):
        src.check_files(range(3))
    with pytest.raises(MetaDatasetError, match="Meta-Dataset source 'aircraft' not found"):
        Source.open(tmp_path, "aircraft")


# ---------------------------------------------------------------- the episode sampler

def check_episode(ep, class_rows, sizes, cfg_ways=(5, 50)):
    n_classes = len(sizes)
    ways = ep.ways
    assert cfg_ways[0] <= ways <= min(cfg_ways[1], n_classes) and len(set(ep.classes)) == ways
    chosen = sizes[ep.classes]
    q = min(10, int((chosen // 2).min()))                                   # query shots per class
    assert np.array_equal(np.bincount(ep.query_labels, minlength=ways), np.full(ways, q))
    k = np.bincount(ep.support_labels, minlength=ways)
    assert (k >= 1).all() and (k <= chosen - q).all()                      # shot bounds
    assert ways <= len(ep.support) <= 500                                  # support size
    bound = np.ceil(np.minimum(100, chosen - q)).sum()                      # ceil(beta x) <= x for beta <= 1
    assert len(ep.support) <= min(500, bound)
    assert not set(ep.support) & set(ep.query)                              # no image in both
    assert len(set(ep.support)) == len(ep.support) and len(set(ep.query)) == len(ep.query)
    for rows, labels in ((ep.support, ep.support_labels), (ep.query, ep.query_labels)):
        for r, lab in zip(rows, labels):                                   # every image is of its class
            assert r in class_rows[ep.classes[lab]]
    return ways, k, q


def test_sampler_rules_over_thousands_of_episodes():
    rng_sizes = np.random.default_rng(0)
    sizes = np.concatenate([[2, 3, 7], rng_sizes.integers(15, 900, 67)])  # 70 classes, tiny ones included
    offsets = np.cumsum([0, *sizes])
    class_rows = [np.arange(a, b) for a, b in zip(offsets[:-1], offsets[1:])]
    sampler, rng = Sampler(sizes), rng_for(0, "synthetic")
    ways, shares, support = [], [], []
    for _ in range(3000):
        ep = sampler.sample(rng, class_rows)
        w, k, _ = check_episode(ep, class_rows, sizes)
        ways.append(w)
        support.append(len(ep.support))
        big = sizes[ep.classes] - 10 >= 200  # classes whose shots are not capped: k_c tracks |Im(c)| * exp(alpha_c)
        if big.sum() >= 2 and len(ep.support) - w > 100:
            ratio = (k[big] / k[big].sum()) / (sizes[ep.classes][big] / sizes[ep.classes][big].sum())
            shares.append(ratio)
    ways = np.asarray(ways)
    assert ways.min() == 5 and ways.max() == 50 and abs(ways.mean() - 27.5) < 1.0  # U{5..50}
    assert np.all(np.abs(np.bincount(ways)[5:] / len(ways) - 1 / 46) < 0.012)
    assert max(support) > 480 and min(support) < 100  # beta spans (0, 1]; sum of floors stays <= |S| <= 500
    shares = np.concatenate(shares)  # exp(alpha) in [0.5, 2]: shares stay within a factor 4 (+ rounding)
    assert 0.2 < shares.min() and shares.max() < 5 and abs(np.median(shares) - 1) < 0.15


def test_sampler_query_rule_with_small_classes():
    sizes = np.array([3, 40, 40, 40, 40])
    rows = [np.arange(s) + 100 * i for i, s in enumerate(sizes)]
    rng = rng_for(1, "small")
    for _ in range(200):
        ep = Sampler(sizes).sample(rng, rows)
        assert len(ep.query) == 5 * 1 and len(ep.support) >= 5  # q = min(10, floor(3 / 2)) = 1 for all


def test_bilevel_episodes_stay_within_one_superclass():
    sizes = np.full(30, 20)
    supers = [np.arange(0, 6), np.arange(6, 30)]
    rows = [np.arange(20) + 20 * i for i in range(30)]
    rng, seen = rng_for(0, "omniglot"), set()
    for _ in range(500):
        ep = Sampler(sizes, superclasses=supers).sample(rng, rows)
        inside = [s for s in supers if set(ep.classes) <= set(s)]
        assert len(inside) == 1 and 5 <= ep.ways <= len(inside[0])
        seen.add(len(inside[0]))
    assert seen == {6, 24}
    with pytest.raises(MetaDatasetError, match="superclass has 4 classes"):
        Sampler(sizes, superclasses=[np.arange(4), np.arange(4, 30)])


def test_fixed_way_and_shot_and_refusals():
    sizes = np.full(12, 30)
    rows = [np.arange(30) + 30 * i for i in range(12)]
    ep = Sampler(sizes, EpisodeConfig(num_ways=5, num_support=1, num_query=15)).sample(rng_for(0, "x"), rows)
    assert ep.ways == 5 and len(ep.support) == 5 and len(ep.query) == 75
    with pytest.raises(MetaDatasetError, match="fewer than the 5 ways"):
        Sampler(np.full(4, 30))
    with pytest.raises(MetaDatasetError, match="at least 2 per class"):
        Sampler(np.array([1, 30, 30, 30, 30]))


def test_episodes_are_deterministic_per_seed_and_source():
    sizes = np.arange(10, 70)
    offsets = np.cumsum([0, *sizes])
    rows = [np.arange(a, b) for a, b in zip(offsets[:-1], offsets[1:])]

    def run(seed, source):
        rng = rng_for(seed, source)
        return [Sampler(sizes).sample(rng, rows) for _ in range(20)]

    a, b, c, d = run(0, "dtd"), run(0, "dtd"), run(1, "dtd"), run(0, "fungi")
    same = lambda x, y: all(np.array_equal(e.support, f.support) and np.array_equal(e.query, f.query) for e, f in zip(x, y))
    assert same(a, b) and not same(a, c) and not same(a, d)


# ---------------------------------------------------------------- heads

def test_heads_separate_clustered_features_and_fail_on_noise():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 64, generator=g) * 3
    y = torch.arange(6).repeat(8)
    x = centres[y] + torch.randn(48, 64, generator=g)
    sx, sy, qx, qy = x[:24], y[:24], x[24:], y[24:]
    for head in heads.HEADS:
        assert heads.accuracy(head, sx, sy, qx, qy, 6) == 100.0
        noise = torch.randn(48, 64, generator=g)
        assert heads.accuracy(head, noise[:24], sy, noise[24:], qy, 6) < 60.0


# ---------------------------------------------------------------- end to end through the CLI

def tiny_checkpoint(path):
    torch.manual_seed(0)
    net = models.backbone("resnet18", cifar_stem=True)
    checkpoint.atomic_save({"format": checkpoint.FORMAT, "version": 1, "arch": "resnet18", "cifar_stem": True,
                            "backbone": net.state_dict(), "config": {"name": "tiny_run", "data": {"image_size": 32}}}, path)


def test_both_protocols_end_to_end(tmp_path, capsys):
    write_tree(tmp_path / "folder", classes=6, per_class=12, size=20)
    convert.convert(tmp_path / "folder", tmp_path / "records" / "dtd", "dtd", (0.0, 0.0, 1.0))
    tiny_checkpoint(tmp_path / "c.pt")
    common = ["--ckpt", str(tmp_path / "c.pt"), "--records", str(tmp_path / "records"), "--domains", "dtd",
              "--results", str(tmp_path / "results"), "--workers", "0"]
    assert main(["linear", *common]) == 0
    rec = json.loads((tmp_path / "results/tiny_run/metadataset/linear_dtd.json").read_text())
    assert rec["stage"] == "metadataset" and rec["dataset"] == "dtd" and set(rec["metrics"]) == {"top1"}
    assert rec["metrics"]["top1"] > 60.0  # colour-coded classes: random-init features separate them (chance 17%)
    assert rec["protocol"]["name"] == "linear" and rec["protocol"]["test_images"] == 6 * 2 and rec["image_size"] == 32
    assert main(["episodic", "--head", "both", "--episodes", "30", *common]) == 0
    out = {}
    for head in heads.HEADS:
        rec = json.loads((tmp_path / f"results/tiny_run/metadataset/episodic_{head}_dtd.json").read_text())
        out[head] = rec["metrics"]
        assert rec["metrics"]["episodes"] == 30 and 0 <= rec["metrics"]["ci95"] < 20
        assert rec["metrics"]["top1"] > 40.0 and rec["protocol"]["official"] is True
        assert rec["protocol"]["sampler"]["max_support_set_size"] == 500 and rec["protocol"]["head"] == head
    assert main(["episodic", "--head", "prototype", "--episodes", "30", *common, "--run", "again"]) == 0
    again = json.loads((tmp_path / "results/again/metadataset/episodic_prototype_dtd.json").read_text())
    assert again["metrics"] == out["prototype"]  # seeded: the same 30 episodes, the same numbers
    capsys.readouterr()


def test_cli_errors_are_one_line_exit_2_and_write_no_record(tmp_path, capsys):
    write_tree(tmp_path / "folder", classes=6, per_class=4)
    convert.convert(tmp_path / "folder", tmp_path / "records" / "dtd", "dtd", (0.0, 0.0, 1.0))
    tiny_checkpoint(tmp_path / "c.pt")
    common = ["--ckpt", str(tmp_path / "c.pt"), "--records", str(tmp_path / "records"),
              "--results", str(tmp_path / "results"), "--workers", "0"]
    cases = [
        (["linear", *common, "--domains", "dtd", "aircraft"], "Meta-Dataset source 'aircraft' not found"),
        (["linear", *common, "--domains", "paper"], "Meta-Dataset source 'aircraft' not found"),  # the paper's nine
        (["episodic", "--head", "logreg", *common, "--domains", "dtd", "--ways", "7"], "7-way episodes need"),
        (["convert", str(tmp_path / "folder"), str(tmp_path / "x"), "--name", "x", "--splits", "0.5,0.5"], "--splits"),
        (["convert", str(tmp_path / "nowhere"), str(tmp_path / "x"), "--name", "x"], "image folder not found"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    (tmp_path / "records" / "dtd" / "4.tfrecords").unlink()
    assert main(["episodic", "--head", "prototype", *common, "--domains", "dtd"]) == 2
    assert "4.tfrecords: class file not found" in capsys.readouterr().err
    blob = (tmp_path / "records" / "dtd" / "3.tfrecords").read_bytes()
    (tmp_path / "records" / "dtd" / "4.tfrecords").write_bytes(blob[:-1])
    assert main(["linear", *common, "--domains", "dtd"]) == 2
    err = capsys.readouterr().err
    assert "4.tfrecords: truncated TFRecord" in err and err.count("\n") == 1
    tfrecord.write(tmp_path / "records" / "dtd" / "4.tfrecords", [example.encode({"image": b"no image", "label": 4})] * 4)
    assert main(["linear", *common, "--domains", "dtd"]) == 2
    err = capsys.readouterr().err
    assert "class 4 record 0: cannot decode image" in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_build_mini_reads_back(tmp_path, capsys):
    assert main(["build-mini", str(tmp_path / "mini")]) == 0
    for name, classes in (("digits", 10), ("mnist", 10), ("lfw", 2), ("photo_patches", 10)):
        src = Source(tmp_path / "mini" / name)
        assert src.spec.classes_per_split == {"TRAIN": 0, "VALID": 0, "TEST": classes}
        images = src.read_class(classes - 1)
        assert len(images) == 100 and Image.open(io.BytesIO(images[0])).format == "PNG"
    digit = np.asarray(Image.open(io.BytesIO(Source(tmp_path / "mini" / "digits").read_class(0)[0])))
    assert digit.shape == (8, 8, 3) and digit.max() > 200  # real 8x8 digits, scaled to 0..255
