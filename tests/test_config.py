from pathlib import Path

import pytest

from pretrain import config


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_are_official():
    c = config.load()
    assert (c.optim.lr, c.optim.batch_size, c.optim.epochs, c.optim.milestones) == (0.03, 256, 200, [136, 166])
    assert (c.negatives.outer, c.negatives.inner, c.negatives.num, c.method.temperature) == (0.1, 0.1, 4096, 0.07)


def test_load_and_override(tmp_path):
    c = config.load(write(tmp_path, "negatives: {sampler: ring}\noptim: {lr: 1}\n"),
                    ["optim.epochs=3", "negatives.anneal.schedule=cosine"])
    assert c.negatives.sampler == "ring" and c.optim.lr == 1.0 and isinstance(c.optim.lr, float)
    assert c.optim.epochs == 3 and c.negatives.anneal.schedule == "cosine"
    assert config.from_dict(config.to_dict(c)) == c
    assert config.load(write(tmp_path, "optim: {weight_decay: 1e-5}\n")).optim.weight_decay == 1e-5


@pytest.mark.parametrize("text,match", [
    ("optim: {lrr: 0.1}\n", r"unknown config key 'optim.lrr'"),
    ("negatvies: {sampler: ring}\n", r"unknown config key 'negatvies'"),
    ("optim: {epochs: ten}\n", r"key 'optim.epochs': expected an integer"),
    ("optim: {lr: [1]}\n", r"key 'optim.lr': expected float"),
    ("optim: {lr: fast}\n", r"key 'optim.lr': expected float"),
    ("data: {verify_checksums: 1}\n", r"key 'data.verify_checksums': expected true/false"),
    ("negatives: {sampler: rings}\n", r"key 'negatives.sampler' = 'rings', expected one of"),
    ("optim: 3\n", r"section 'optim' must be a mapping"),
    ("negatives: {outer: 0}\n", r"negatives.outer"),
    ("a: [\n", r"not valid YAML"),
])
def test_bad_config_names_file_and_key(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(config.ConfigError, match=match) as exc:
        config.load(p)
    assert str(p) in str(exc.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.yaml")
    with pytest.raises(config.ConfigError, match="expected KEY=VALUE"):
        config.load(None, ["optim.lr"])
    with pytest.raises(config.ConfigError, match="unknown config key 'optim.learning_rate'"):
        config.load(None, ["optim.learning_rate=0.1"])


def test_every_shipped_preset_loads():
    from pathlib import Path
    presets = sorted(Path(__file__).parent.parent.glob("configs/*/*.yaml"))
    assert len(presets) >= 20
    names = set()
    for p in presets:
        c = config.load(p)
        assert c.name == p.stem or p.parent.name in ("mini", "gpu"), p
        names.add(c.name)
    assert len(names) == len(presets)  # run names are unique: records never overwrite each other


def test_la_baseline_presets_are_las_own_4096_nearest_background():
    """LA's background is its 4,096 nearest bank rows (the anchor's own row and 4,095 others):
    ball sized by LA to the bank at run time (method.la.background, not negatives.outer), ranks
    [0, 4095) of the N - 1 other rows, for each dataset's N (tests/test_la.py: on the real sets)."""
    from pathlib import Path

    from pretrain.methods.la import ball_outer
    from pretrain.negatives import band_limits
    sizes = {"cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000, "imagenet": 1_281_167, "photo_patches": 5000,
             "mnist5k": 4000}
    presets = sorted(Path(__file__).parent.parent.glob("configs/*/*_la_ball*.yaml"))
    assert len(presets) == 7 and not list(Path(__file__).parent.parent.glob("configs/*/*_la_uniform*.yaml"))
    for p in presets:
        c = config.load(p)
        n = min(sizes[c.data.dataset], c.data.limit or sizes[c.data.dataset])
        assert c.negatives.sampler == "ball" and c.negatives.inner == 0.0, p
        assert c.negatives.outer == config.NegativesConfig.outer and c.method.la.background == 4096, p
        assert band_limits(n - 1, ball_outer(c.method.la.background, n - 1), 0.0) == (0, min(4095, n - 1)), p


def test_imagenet_bank_rings_rank_on_a_subset_and_the_rest_exactly():
    """At ImageNet scale the drawing methods' rings are estimated (exact ranks over a 1.28M bank
    cost more than the 1.05x target, benchmarks/ring_speed.py; their accuracy is measured by
    benchmarks/ring_accuracy.py); every other preset ranks exactly. LA's 4,096-row ball would be
    off by about 14% on a subset, and MoCo's 65,536 queue is cheaper exactly."""
    from pathlib import Path
    for p in sorted(Path(__file__).parent.parent.glob("configs/*/*.yaml")):
        c = config.load(p)
        estimated = c.data.dataset == "imagenet" and c.method.name in ("ir", "cmc") and c.negatives.sampler == "ring"
        assert c.negatives.estimate == (16384 if estimated else 0), p


def test_presets_compose_from_groups_and_the_preset_wins(tmp_path):
    """`defaults:` layers group files in order (recursively), then the preset's own keys."""
    groups = tmp_path / "configs" / "groups"
    (groups / "method").mkdir(parents=True)
    (groups / "schedule").mkdir()
    (groups / "method" / "moco.yaml").write_text("method: {name: moco, moco: {queue_size: 1024}}\nmodel: {head: mlp}\n")
    (groups / "method" / "moco_small.yaml").write_text("defaults: [method/moco]\nmethod: {moco: {queue_size: 512}}\n")
    (groups / "schedule" / "short.yaml").write_text("optim: {epochs: 3, lr: 0.5}\n")
    preset = tmp_path / "configs" / "mine" / "p.yaml"
    preset.parent.mkdir()
    preset.write_text("defaults: [method/moco_small, schedule/short]\nname: p\noptim: {lr: 0.1}\n")
    c = config.load(preset, ["optim.epochs=7"])
    assert (c.method.name, c.method.moco.queue_size, c.model.head) == ("moco", 512, "mlp")
    assert (c.optim.epochs, c.optim.lr, c.name) == (7, 0.1, "p")
    (groups / "schedule" / "short.yaml").write_text("optim: {epochs: 0}\n")  # a group's bad value names the group
    with pytest.raises(config.ConfigError, match=r"short.yaml: key 'optim.epochs' = 0, expected an integer >= 1"):
        config.load(preset)
    preset.write_text("defaults: [method/nope]\n")
    with pytest.raises(config.ConfigError, match=r"p.yaml: defaults entry 'method/nope': .*nope.yaml not found"):
        config.load(preset)


def test_each_method_has_its_own_settings_and_old_keys_still_read():
    c = config.load(None, ["method.name=la", "method.la.clusters=7", "method.moco.key_momentum=0.5"])
    assert c.method.la.clusters == 7 and c.method.moco.key_momentum == 0.5 and not hasattr(c.method, "la_clusters")
    old = config.load(None, ["method.la_clusters=9", "method.queue_size=128", "method.bank_momentum=0.25"])
    assert old.method.la.clusters == 9 and old.method.moco.queue_size == 128
    assert old.method.ir.bank_momentum == old.method.cmc.bank_momentum == old.method.la.bank_momentum == 0.25
    # a checkpoint's config written in the old layout reads in today's
    migrated = config.migrate({"method": {"name": "moco", "queue_size": 4096, "key_momentum": 0.99}})
    # written before exclude_own_key existed: it kept the own key, and resumes so
    assert migrated["method"]["moco"] == {"queue_size": 4096, "key_momentum": 0.99, "exclude_own_key": False}
    assert config.migrate({"method": {"name": "la"}})["method"]["la"]["warm_start_epochs"] == 0
    assert config.migrate(config.to_dict(config.load(None, ["method.name=la"])))["method"]["la"]["warm_start_epochs"] == 10
    with pytest.raises(config.ConfigError, match=r"unknown config key 'method.moco.clusters'"):
        config.load(None, ["method.moco.clusters=3"])


def test_paper_presets_no_longer_repeat_the_defaults():
    """Each paper preset is its groups, its name and at most the one value that is its own."""
    from pathlib import Path
    presets = sorted(Path(__file__).parent.parent.glob("configs/paper/*.yaml"))
    assert len(presets) == 50  # 44, and IR, MoCo, SimCLR with DCL and HCL on CIFAR-10
    for p in presets:
        lines = [l for l in p.read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert lines[0].startswith("defaults: [") and len(lines) <= 3, p


def test_two_options_of_one_group_in_defaults_are_refused(tmp_path):
    """The later option would silently replace the earlier one's keys (ring over uniform here)."""
    groups = Path(__file__).parent.parent / "configs" / "groups"
    preset = tmp_path / "configs" / "x.yaml"
    preset.parent.mkdir()
    (tmp_path / "configs" / "groups").symlink_to(groups)
    preset.write_text("defaults: [method/ir, negatives/uniform, negatives/ring]\nname: x\n")
    with pytest.raises(config.ConfigError, match=r"two options of group 'negatives' \(negatives/uniform, negatives/ring\)"):
        config.load(preset)
    preset.write_text("defaults: [method/moco, scale/small_data, negatives/ring]\nname: x\n")  # a modifier group
    assert config.load(preset).method.moco.queue_size == 4096
