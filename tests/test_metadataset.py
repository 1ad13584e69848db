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

from core import checkpoint
from metadataset import convert, example, golden, heads, protocols, tfrecord
from metadataset import features as metadataset_features
from metadataset import spec as spec_mod
from metadataset.__main__ import main
from metadataset.episodes import (
    Episode,
    EpisodeConfig,
    Sampler,
    description_seed,
    draw,
    drawn_images,
    image_rng_for,
    pick_images,
    rng_for,
    split_sampler,
)
from metadataset.errors import MetaDatasetError
from metadataset.records import Source
from pretrain import models

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

def check_episode(ep, sizes, cfg_ways=(5, 50)):
    n_classes = len(sizes)
    ways = ep.ways
    assert cfg_ways[0] <= ways <= min(cfg_ways[1], n_classes) and len(set(ep.classes)) == ways
    chosen = sizes[ep.classes]
    q = min(10, int((chosen // 2).min()))                                   # query shots per class
    assert ep.num_query == q and np.array_equal(np.bincount(ep.query_labels, minlength=ways), np.full(ways, q))
    k = np.bincount(ep.support_labels, minlength=ways)
    assert np.array_equal(k, ep.shots)
    assert (k >= 1).all() and (k <= chosen - q).all()                      # shot bounds
    assert ways <= k.sum() <= 500                                          # support size
    bound = np.ceil(np.minimum(100, chosen - q)).sum()                      # ceil(beta x) <= x for beta <= 1
    assert k.sum() <= min(500, bound)
    for j, c in enumerate(ep.classes):                                     # every image is of its class, once
        images = ep.images[j]
        assert len(images) == k[j] + q and len(set(images.tolist())) == len(images)
        assert 0 <= images.min() and images.max() < sizes[c]
        assert not set(ep.support(j).tolist()) & set(ep.query(j).tolist())  # no image in both
    return ways, k, q


def test_sampler_rules_over_thousands_of_episodes():
    rng_sizes = np.random.default_rng(0)
    sizes = np.concatenate([[2, 3, 7], rng_sizes.integers(15, 900, 67)])  # 70 classes, tiny ones included
    sampler, rng, images = Sampler(sizes), rng_for(0, "synthetic"), image_rng_for(0, "synthetic")
    ways, shares, support = [], [], []
    for _ in range(3000):
        ep = sampler.sample(rng, images)
        w, k, _ = check_episode(ep, sizes)
        ways.append(w)
        support.append(k.sum())
        big = sizes[ep.classes] - 10 >= 200  # classes whose shots are not capped: k_c tracks |Im(c)| * exp(alpha_c)
        if big.sum() >= 2 and k.sum() - w > 100:
            ratio = (k[big] / k[big].sum()) / (sizes[ep.classes][big] / sizes[ep.classes][big].sum())
            shares.append(ratio)
    ways = np.asarray(ways)
    assert ways.min() == 5 and ways.max() == 50 and abs(ways.mean() - 27.5) < 1.0  # U{5..50}
    assert np.all(np.abs(np.bincount(ways)[5:] / len(ways) - 1 / 46) < 0.012)
    assert max(support) > 480 and min(support) < 100  # beta spans (0, 1]; sum of floors stays <= |S| <= 500
    shares = np.concatenate(shares)  # exp(alpha) in [0.5, 2]: shares stay within a factor 4 (+ rounding)
    assert 0.2 < shares.min() and shares.max() < 5 and abs(np.median(shares) - 1) < 0.15


def test_image_picks_are_uniform_distinct_and_in_random_order():
    """pick_images(n, m): m distinct indices, every index and every position equally likely,
    on both of its paths (first distinct draws where m < n/2, a permutation otherwise)."""
    rng = np.random.RandomState(0)
    for n, m, trials in ((1000, 30, 20000), (12, 9, 20000)):
        counts, first = np.zeros(n), np.zeros(n)
        for _ in range(trials):
            got = pick_images(n, m, rng)
            assert len(got) == m and len(set(got.tolist())) == m and 0 <= got.min() and got.max() < n
            counts[got] += 1
            first[got[0]] += 1
        expected = trials * m / n  # each index is in a pick with probability m / n ...
        assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)
        assert np.abs(first - trials / n).max() < 5 * np.sqrt(trials / n)  # ... and first with 1 / n
    assert len(pick_images(340_029, 510, rng)) == 510  # QuickDraw's largest test class, the most an episode takes


def test_sampler_query_rule_with_small_classes():
    sizes = np.array([3, 40, 40, 40, 40])
    rng, images = rng_for(1, "small"), image_rng_for(1, "small")
    for _ in range(200):
        ep = Sampler(sizes).sample(rng, images)
        assert len(ep.query_labels) == 5 * 1 and ep.shots.sum() >= 5  # q = min(10, floor(3 / 2)) = 1 for all


def test_bilevel_episodes_stay_within_one_superclass():
    sizes = np.full(30, 20)
    supers = [np.arange(0, 6), np.arange(6, 30)]
    rng, images, seen = rng_for(0, "omniglot"), image_rng_for(0, "omniglot"), set()
    for _ in range(500):
        ep = Sampler(sizes, superclasses=supers).sample(rng, images)
        inside = [s for s in supers if set(ep.classes) <= set(s)]
        assert len(inside) == 1 and 5 <= ep.ways <= len(inside[0])
        seen.add(len(inside[0]))
    assert seen == {6, 24}
    with pytest.raises(MetaDatasetError, match="superclass has 4 classes"):
        Sampler(sizes, superclasses=[np.arange(4), np.arange(4, 30)])


def test_fixed_way_and_shot_and_refusals():
    sizes = np.full(12, 30)
    ep = Sampler(sizes, EpisodeConfig(num_ways=5, num_support=1, num_query=15)).sample(rng_for(0, "x"),
                                                                                      image_rng_for(0, "x"))
    assert ep.ways == 5 and len(ep.support_labels) == 5 and len(ep.query_labels) == 75
    with pytest.raises(MetaDatasetError, match="fewer than the 5 ways"):
        Sampler(np.full(4, 30))
    with pytest.raises(MetaDatasetError, match="at least 2 per class"):
        Sampler(np.array([1, 30, 30, 30, 30]))


def test_episodes_are_deterministic_per_seed_and_source():
    sampler = Sampler(np.arange(10, 70))

    def run(seed, source):
        return draw(sampler, 20, seed, source)

    a, b, c, d = run(0, "dtd"), run(0, "dtd"), run(1, "dtd"), run(0, "fungi")
    same = lambda x, y: all(np.array_equal(e.classes, f.classes) and all(map(np.array_equal, e.images, f.images))  # noqa: E731
                            for e, f in zip(x, y))
    assert same(a, b) and not same(a, c) and not same(a, d)


# ---------------------------------------------------------------- the official episodes, draw for draw

GOLDEN = Path(__file__).parent / "data" / "md_golden_episodes.json"
OFFICIAL = Path(__file__).resolve().parents[1] / "metadataset" / "official"


@pytest.fixture(scope="module")
def golden_episodes():
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("source", golden.SOURCES)
def test_episode_descriptions_are_the_official_samplers_draw_for_draw(golden_episodes, source):
    """tests/data/md_golden_episodes.json holds the first episode descriptions that a
    transcription of the official EpisodeDescriptionSampler (metadataset/golden.py) gives on
    each official spec from the state our generator starts in. Ours, drawn as the episodic
    protocol draws them (image picks in between), are the same, episode for episode."""
    entry = golden_episodes["sources"][source]
    spec = spec_mod.from_json(json.loads((OFFICIAL / f"{source}_dataset_spec.json").read_text()), source)
    assert entry["rng_state"] == description_seed(golden_episodes["seed"], source)
    episodes = draw(split_sampler(spec, EpisodeConfig(), source), len(entry["episodes"]), golden_episodes["seed"], source)
    got = [[ep.classes.tolist(), ep.shots.tolist(), ep.num_query] for ep in episodes]
    assert len(got) == 100 and got == entry["episodes"]


def test_the_golden_file_is_what_its_script_writes(golden_episodes):
    fresh = golden.make(episodes=3, seed=golden_episodes["seed"])
    assert {k: v for k, v in fresh.items() if k not in ("sources", "made_by")} == \
        {k: v for k, v in golden_episodes.items() if k not in ("sources", "made_by")}
    for name, entry in fresh["sources"].items():
        assert entry["episodes"] == golden_episodes["sources"][name]["episodes"][:3]
    kinds = {name: len(e["episodes"][0][0]) for name, e in golden_episodes["sources"].items()}
    assert set(kinds) == {"omniglot", "dtd", "vgg_flower", "cu_birds", "quickdraw", "mscoco", "ilsvrc_2012"}
    # the draws the file exercises: ImageNet nodes above 50 leaves sub-sampled, Omniglot within one alphabet
    ways = [len(ep[0]) for ep in golden_episodes["sources"]["ilsvrc_2012"]["episodes"]]
    assert 50 in ways and min(ways) >= 5
    raw = json.loads((OFFICIAL / "omniglot_dataset_spec.json").read_text())
    test_supers = spec_mod.from_json(raw, "omniglot").superclasses["TEST"]
    first = test_supers[0].start
    for ep in golden_episodes["sources"]["omniglot"]["episodes"]:
        assert sum(set(ep[0]) <= {c - first for c in r} for r in test_supers) == 1


# ---------------------------------------------------------------- embedding what the episodes draw

def write_classes(root, name, sizes, train=0):
    """A source in the official records format whose class c holds sizes[c] copies of a 2 x 2
    image of grey level 40 c (tiny, so a 100,000-image class takes a second to write)."""
    blobs = [convert.encode_array(np.full((2, 2), 40 * c, np.uint8)) for c in range(len(sizes))]
    classes = [(f"k{c}", [blob] * n) for c, (blob, n) in enumerate(zip(blobs, sizes))]
    return convert.write_source(root / name, name, classes, {"TRAIN": train, "VALID": 0, "TEST": len(sizes) - train})


class Counting(metadataset_features.FeatureCache):
    """A feature cache that lists the images it embeds, as (class, index)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.embedded = []

    def _embed(self, blobs, names):
        self.embedded += [(int(n.split(" class ")[1].split()[0]), int(n.rsplit(" ", 1)[1])) for n in names]
        return super()._embed(blobs, names)


def pooling_net():
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())  # 12 features, nothing to train


def test_episodes_embed_only_the_images_they_draw_from_a_100000_image_class(tmp_path, monkeypatch):
    """A test class of 100,000 images: the episodes are drawn first and exactly the union of
    their images is embedded, each once; no class is read whole."""
    write_classes(tmp_path, "big", [12, 100_000, 40, 30, 25, 60, 33], train=1)
    src = Source(tmp_path / "big")
    monkeypatch.setattr(Source, "read_class", lambda *a: pytest.fail("a whole class was read"))
    cache = Counting(pooling_net(), 4, "cpu", workers=0)
    out = protocols.episodic(cache, src, ["prototype"], episodes=40, seed=0)
    episodes = draw(split_sampler(src.spec, EpisodeConfig(), str(src.root)), 40, 0, "big")
    union = {(1 + int(c), int(i)) for ep in episodes for c, idx in zip(ep.classes, ep.images) for i in idx}
    assert len(cache.embedded) == len(set(cache.embedded)) == len(union)  # each image once ...
    assert set(cache.embedded) == union  # ... and only the episodes' images (class ids after the train class)
    stats = out["stats"]
    assert stats["images_embedded"] == stats["images_drawn"] == len(union) and stats["test_images"] == 100_188
    big = sum(1 for c, _ in union if c == 1)
    assert 0 < big <= 40 * (500 + 10) and len(union) < 100_000 // 4  # bounded by the episodes, not the class
    assert out["heads"]["prototype"]["top1"] == 100.0  # one grey level per class


# The numbers of the code before issue 27 (every test image embedded first; each episode's
# image shuffles drawn from its description generator), run through the CLI on the mini
# sources: seed 0, the tiny checkpoint below, --image-size 8.
TODAY = {("prototype", "digits", 40): 79.861408919096, ("prototype", "mnist", 40): 78.55297580361366,
         ("prototype", "photo_patches", 40): 84.71736118197441, ("logreg", "digits", 10): 86.68333351612091}


@pytest.fixture(scope="module")
def mini_sources(tmp_path_factory):
    from metadataset import mini
    out = tmp_path_factory.mktemp("mini")
    mini.build(out)
    return out


def test_embedding_the_drawn_images_gives_todays_accuracy_on_the_mini_sources(tmp_path, mini_sources):
    """Today's episodes (the old stream, rebuilt here from its rule), embedded the new way:
    only their images, each once. The accuracies are today's, to the last digit."""
    tiny_checkpoint(tmp_path / "c.pt")
    net, _ = models.load_backbone(tmp_path / "c.pt")
    torch.manual_seed(0)
    cache = metadataset_features.FeatureCache(net, 8, "cpu", 256, 0)
    for (head, name, n), today in TODAY.items():
        src = Source(mini_sources / name)
        sampler, rng = split_sampler(src.spec, EpisodeConfig(), str(src.root)), rng_for(0, name)
        episodes = []
        for _ in range(n):
            classes, shots, q = sampler.sample_description(rng)
            images = tuple(rng.permutation(sampler.sizes[c])[:k + q] for c, k in zip(classes, shots))
            episodes.append(Episode(classes, shots, q, images))
        test = src.spec.classes("TEST")
        table, _ = cache.drawn(src, {test.start + c: i for c, i in drawn_images(episodes).items()})
        accs, _ = protocols.evaluate(table, test.start, episodes, [head])
        assert protocols.mean_ci95(accs[head])[0] == pytest.approx(today, rel=1e-12, abs=0), (head, name)


def test_drawn_features_spill_to_a_file_and_a_folder_is_reused_only_by_its_own(tmp_path):
    write_classes(tmp_path, "src", [300, 40, 30, 25, 60, 33])
    src = Source(tmp_path / "src")

    def run(**kwargs):
        cache = Counting(pooling_net(), 4, "cpu", workers=0, **kwargs)
        return protocols.episodic(cache, src, ["prototype", "logreg"], episodes=15, seed=3), cache

    memory, _ = run()
    spilled, _ = run(memory_limit=0)  # past the limit: a temporary file, the same numbers
    assert spilled == memory and memory["stats"]["images_embedded"] > 0
    folder = tmp_path / "cache"
    first, _ = run(folder=folder, checkpoint_sha256="a" * 64)
    again, cache = run(folder=folder, checkpoint_sha256="a" * 64)
    assert first["heads"] == again["heads"] == memory["heads"] and not cache.embedded
    assert again["stats"]["images_reused"] == first["stats"]["images_embedded"] == memory["stats"]["images_embedded"]
    assert json.loads((folder / "cache.json").read_text())["checkpoint_sha256"] == "a" * 64
    before = sorted((p.name, p.stat().st_size) for p in folder.rglob("*"))
    for kwargs, message in (({"checkpoint_sha256": "b" * 64}, "holds the features of checkpoint aaaaaaaaaaaa"),
                            ({"checkpoint_sha256": "a" * 64, "preprocessing": "official", "size": 84},
                             "ringbench preprocessing at 4 px, not of this run's checkpoint aaaaaaaaaaaa, official")):
        size = kwargs.pop("size", 4)
        cache = metadataset_features.FeatureCache(pooling_net(), size, "cpu", workers=0, folder=folder, **kwargs)
        with pytest.raises(MetaDatasetError, match=message) as err:
            cache.check([src])
        assert "\n" not in str(err.value)
    write_classes(tmp_path / "other", "src", [300, 40, 30, 25, 60, 34])  # the same name, other images
    with pytest.raises(MetaDatasetError, match="holds features of another 'src' source"):
        metadataset_features.FeatureCache(pooling_net(), 4, "cpu", folder=folder, checkpoint_sha256="a" * 64).check(
            [Source(tmp_path / "other" / "src")])
    assert sorted((p.name, p.stat().st_size) for p in folder.rglob("*")) == before  # refused: nothing written
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine\n")
    with pytest.raises(MetaDatasetError, match="not a feature cache"):
        metadataset_features.FeatureCache(pooling_net(), 4, "cpu", folder=tmp_path / "notes",
                                          checkpoint_sha256="a" * 64).check([src])


def test_official_preprocessing_is_meta_datasets_decoder():
    """tf.image.resize_images(BILINEAR, align_corners=True), then 2 (x / 255 - 0.5), by hand:
    2 x 2 -> 3 x 3 samples the input at 0, 1/2, 1; 4 -> 2 samples pixels 0 and 3 exactly
    (no antialiasing would average them with their neighbours)."""
    img = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("RGB")
    x = metadataset_features.OfficialTransform(3)(img)
    assert x.shape == (3, 3, 3) and x.dtype == torch.float32
    assert torch.equal(x[1], torch.tensor([[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, -1.0]]))
    row = Image.fromarray(np.array([[0, 100, 200, 255]] * 4, np.uint8)).convert("RGB")
    assert metadataset_features.OfficialTransform(2)(row)[0].tolist() == [[-1.0, 1.0], [-1.0, 1.0]]
    assert metadataset_features.transform(84, "official").size == 84
    with pytest.raises(MetaDatasetError, match="84 or 126 px, not 32 px"):
        metadataset_features.check_preprocessing("official", 32)


def test_contamination_follows_the_official_duplicate_lists():
    """All 43 CUB images of ImageNet_CUBirds_duplicates.txt are of CUB's v1 train or valid
    classes: an ImageNet-1k backbone's episodic cu_birds rows (test classes) are clean, its
    linear cu_birds rows (every class) and all its ilsvrc_2012 rows are not."""
    from metadataset.contamination import contaminated, cub_class, cub_duplicate_classes
    spec = spec_mod.from_json(json.loads((OFFICIAL / "cu_birds_dataset_spec.json").read_text()), "cu_birds")
    names = lambda split: [spec.class_names[c] for c in spec.classes(split)]  # noqa: E731
    duplicates = cub_duplicate_classes()
    assert len(duplicates) == 43 and set(duplicates) <= {cub_class(n) for n in spec.class_names.values()}
    assert not set(duplicates) & {cub_class(n) for n in names("TEST")}
    assert contaminated("imagenet", "ringbench", "cu_birds", names("TEST")) is None
    every = contaminated("imagenet", "ringbench", "cu_birds", spec.class_names.values())
    assert every.startswith("yes: ") and "43 images of the evaluated cu_birds classes" in every
    assert contaminated("imagenet", "ringbench", "ilsvrc_2012", ["n01440764"]).startswith("yes: the backbone was "
                                                                                          "pretrained on all of")
    assert contaminated("imagenet100", "ringbench", "ilsvrc_2012", []).startswith("possibly: ")
    assert contaminated(None, "torchvision", "ilsvrc_2012", []).startswith("possibly: the torchvision checkpoint")
    assert contaminated("cifar100", "ringbench", "ilsvrc_2012", []) is None
    assert contaminated("imagenet", "ringbench", "dtd", ["banded"]) is None


def test_the_benchmark_prints_both_arms_on_tiny_settings(tmp_path):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "episodic_cost.py"), "--tiny", "--work",
                          str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): [c.strip() for c in line.strip("|").split("|")]
            for line in out.stdout.splitlines() if line.startswith("| full") or line.startswith("| x")}
    counted = {arm: int(r[2].replace(",", "")) for (size, arm), r in rows.items() if size.startswith("full")}
    measured = {arm: r for (size, arm), r in rows.items() if size.startswith("x")}
    assert counted["before"] == 7_710_295 and 0 < counted["after"] < 5 * 1000  # 5 episodes: at most 5 x 1,000 images
    assert int(measured["after"][2].replace(",", "")) < int(measured["before"][2].replace(",", ""))
    assert measured["after"][5] == measured["before"][5] and "the same top-1: True" in out.stdout


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

def tiny_checkpoint(path, cifar_stem=True, data=None):
    torch.manual_seed(0)
    net = models.backbone("resnet18", cifar_stem=cifar_stem)
    checkpoint.atomic_save({"format": checkpoint.FORMAT, "version": 1, "arch": "resnet18", "cifar_stem": cifar_stem,
                            "backbone": net.state_dict(),
                            "config": {"name": "tiny_run", "data": data or {"image_size": 32}}}, path)


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
        assert rec["metrics"]["top1"] > 40.0 and rec["protocol"]["sampler"]["max_support_set_size"] == 500
        p = rec["protocol"]
        assert p["head"] == head and "official" not in p  # what holds, flag by flag:
        assert p["official_sampling"] is True and p["official_preprocessing"] is False
        assert p["episodes"] == 30 and p["official_episode_count"] is False and p["preprocessing"]["image_size"] == 32
        assert "Meta-Dataset's episode descriptions draw for draw" in rec["setting"]
        assert "ringbench preprocessing (32 px, antialiased bilinear resize, ImageNet mean/std)" in rec["setting"]
        assert p["images_embedded"] == p["images_drawn"] <= p["test_images"] == 72
        assert rec["contaminated"] is None and rec["md_version"] == "v1" and rec["pretrain_dataset"] is None
    assert main(["episodic", "--head", "prototype", "--episodes", "30", *common, "--run", "again"]) == 0
    again = json.loads((tmp_path / "results/again/metadataset/episodic_prototype_dtd.json").read_text())
    assert again["metrics"] == out["prototype"]  # seeded: the same 30 episodes, the same numbers
    fixed = ["episodic", "--head", "prototype", "--episodes", "5", "--ways", "5", "--shots", "1", *common]
    assert main([*fixed, "--run", "fixed"]) == 0
    rec = json.loads((tmp_path / "results/fixed/metadataset/episodic_prototype_dtd_5way1shotvquery.json").read_text())
    assert rec["protocol"]["official_sampling"] is False and "draw for draw" not in rec["setting"]
    capsys.readouterr()


def test_official_preprocessing_runs_in_both_protocols_and_is_recorded(tmp_path, capsys):
    write_tree(tmp_path / "folder", classes=5, per_class=4, size=20)
    convert.convert(tmp_path / "folder", tmp_path / "records" / "dtd", "dtd", (0.0, 0.0, 1.0))
    tiny_checkpoint(tmp_path / "c.pt", cifar_stem=False)  # the ImageNet stem: 84 px stays cheap
    common = ["--ckpt", str(tmp_path / "c.pt"), "--records", str(tmp_path / "records"), "--domains", "dtd",
              "--results", str(tmp_path / "results"), "--workers", "0", "--preprocessing", "official"]
    assert main(["linear", *common]) == 0
    assert main(["episodic", "--head", "prototype", "--episodes", "3", *common]) == 0
    for task in ("linear_dtd", "episodic_prototype_dtd"):
        rec = json.loads((tmp_path / f"results/tiny_run/metadataset/{task}.json").read_text())
        assert rec["image_size"] == 84 and rec["protocol"]["official_preprocessing"] is True
        assert rec["protocol"]["preprocessing"]["name"] == "official"
        assert "Meta-Dataset's preprocessing (84 px, bilinear without antialiasing, [-1, 1])" in rec["setting"]
    capsys.readouterr()
    assert main(["linear", *common, "--image-size", "32", "--results", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "--preprocessing official is Meta-Dataset's decoder at 84 or 126 px, not 32 px" in err and err.count("\n") == 1
    assert not (tmp_path / "r2").exists()


def test_feature_cache_folders_and_md_v2_and_contaminated_rows_through_the_cli(tmp_path, capsys):
    write_tree(tmp_path / "folder", classes=6, per_class=4, size=8)
    for name in ("dtd", "ilsvrc_2012", "vgg_flower"):
        convert.convert(tmp_path / "folder", tmp_path / "records" / name, name, (0.0, 0.0, 1.0))
    tiny_checkpoint(tmp_path / "c.pt", data={"dataset": "imagenet", "image_size": 8})
    tiny_checkpoint(tmp_path / "d.pt", data={"dataset": "imagenet", "image_size": 16})
    common = ["--ckpt", str(tmp_path / "c.pt"), "--records", str(tmp_path / "records"), "--workers", "0"]
    episodic = ["episodic", "--head", "prototype", "--episodes", "4", *common]
    # a folder keyed by the checkpoint and preprocessing: reused by the same run, refused by another
    cache = ["--feature-cache", str(tmp_path / "fc"), "--domains", "ilsvrc_2012"]
    assert main([*episodic, *cache, "--results", str(tmp_path / "r1")]) == 0
    assert main([*episodic, *cache, "--results", str(tmp_path / "r2")]) == 0
    first, second = (json.loads((tmp_path / f"{r}/tiny_run/metadataset/episodic_prototype_ilsvrc_2012.json").read_text())
                     for r in ("r1", "r2"))
    assert first["metrics"] == second["metrics"] and second["protocol"]["images_embedded"] == 0
    assert second["protocol"]["images_reused"] == first["protocol"]["images_embedded"] > 0
    # an ImageNet-1k backbone on ilsvrc_2012: a contaminated row, and says why
    assert first["contaminated"].startswith("yes: the backbone was pretrained on all of ImageNet-1k")
    capsys.readouterr()
    assert main([*episodic, *cache, "--ckpt", str(tmp_path / "d.pt"), "--results", str(tmp_path / "r3")]) == 2
    err = capsys.readouterr().err
    assert "holds the features of checkpoint" in err and "not of this run's" in err and err.count("\n") == 1
    assert not (tmp_path / "r3").exists()
    # Meta-Dataset v2: ImageNet is training only and VGG Flower is not a source
    assert main(["linear", *common, "--md-version", "v2", "--results", str(tmp_path / "r4")]) == 0
    err = capsys.readouterr().err
    assert "skipping ilsvrc_2012: a training-only source in Meta-Dataset v2" in err and "skipping vgg_flower" in err
    assert [p.name for p in (tmp_path / "r4/tiny_run/metadataset").iterdir()] == ["linear_dtd.json"]
    rec = json.loads((tmp_path / "r4/tiny_run/metadataset/linear_dtd.json").read_text())
    assert rec["md_version"] == "v2" and "Meta-Dataset v2 sources and splits" in rec["setting"]
    assert rec["contaminated"] is None
    assert main(["linear", *common, "--md-version", "v2", "--domains", "ilsvrc_2012", "--results", str(tmp_path / "r5")]) == 2
    err = capsys.readouterr().err
    assert "ilsvrc_2012: a training-only source in Meta-Dataset v2" in err and err.count("\n") == 1
    assert not (tmp_path / "r5").exists()


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
