"""python -m metadataset.golden OUT.json [--episodes 100] [--seed 0]

Writes the golden episode descriptions that tests/test_metadataset.py holds our sampler to
(tests/data/md_golden_episodes.json): for each of the seven official specs in
metadataset/official/, the first episodes that Meta-Dataset's own sampler describes when its
generator starts in the state ours starts in for (seed, source).

The sampler below is a transcription of the facts of the official
meta_dataset/data/sampling.py (EpisodeDescriptionSampler, google-research/meta-dataset at
OFFICIAL_COMMIT) under its evaluation defaults (learn/gin/setups/data_config_common.gin:
min_ways 5, max_ways_upper_bound 50, max_num_query 10, max_support_set_size 500,
max_support_size_contrib_per_class 100, log-weights in [log 0.5, log 2], min_examples_in_class
0, ignore_hierarchy_probability 0; the DAG for ilsvrc_2012, the bi-level ontology for omniglot,
as its dump_episodes.py sets them). It reads the spec JSON itself and shares no code with
metadataset/episodes.py or metadataset/spec.py, so the test compares two independent readings
of the official code. Only the seeding is ours: the official sampler seeds its `_rng` from a
module-level generator; here it is RandomState(episodes.description_seed(seed, source)).
Numpy only: no TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from metadataset.episodes import description_seed

OFFICIAL_COMMIT = "167609505780a3dc604f50206253d65839093be9"
OFFICIAL_DIR = Path(__file__).resolve().parent / "official"
SOURCES = ("omniglot", "dtd", "vgg_flower", "cu_birds", "quickdraw", "mscoco", "ilsvrc_2012")
MIN_WAYS, MAX_WAYS, MAX_QUERY, MAX_SUPPORT, MAX_CONTRIB = 5, 50, 10, 500, 100
MIN_LOG_WEIGHT, MAX_LOG_WEIGHT = np.log(0.5), np.log(2)
MAX_SPANNING_LEAVES_ELIGIBLE = 392  # sampling.py's module constant


class OfficialSampler:
    """The test split of one official spec, as EpisodeDescriptionSampler sees it: `sizes`
    (images per test class, relative ids), and the structure its class draw uses."""

    def __init__(self, raw: dict):
        self.kind = raw["__class__"]
        ids = {int(k): v for k, v in raw["images_per_class"].items()} if self.kind != "HierarchicalDatasetSpecification" \
            else None
        if self.kind == "DatasetSpecification":
            per = raw["classes_per_split"]
            first = per["TRAIN"] + per["VALID"]
            self.sizes = np.array([ids[c] for c in range(first, first + per["TEST"])])
        elif self.kind == "BiLevelDatasetSpecification":
            per = raw["superclasses_per_split"]
            counts = [raw["classes_per_superclass"][str(s)] for s in range(sum(per.values()))]
            first_super = per["TRAIN"] + per["VALID"]
            split_offset = sum(counts[:first_super])
            # get_class_ids_from_superclass_subclass_inds: classes numbered superclass by superclass
            self.superclasses = {s: (sum(counts[:s]) - split_offset, counts[s])
                                 for s in range(first_super, first_super + per["TEST"])}
            self.sizes = np.array([ids[c] for c in range(split_offset, split_offset + sum(counts[first_super:]))])
        else:  # HierarchicalDatasetSpecification: the TEST split's WordNet subgraph
            graphs = raw["split_subgraphs"]
            nodes = {n["wn_id"]: n["children_ids"] for n in graphs["TEST"]}
            wn_to_id = {wn: int(cid) for cid, wn in raw["class_names"].items()}
            # get_classes(TEST): ids after the TRAIN and VALID leaves; relative id = id - that offset
            first = sum(1 for split in ("TRAIN", "VALID") for n in graphs[split] if not n["children_ids"])
            leaves = sorted((wn for wn, kids in nodes.items() if not kids), key=lambda wn: wn_to_id[wn])
            rel = {wn: wn_to_id[wn] - first for wn in leaves}
            assert sorted(rel.values()) == list(range(len(leaves))), "TEST class ids are not consecutive"
            self.sizes = np.array([raw["images_per_class"]["TEST"][wn] for wn in leaves])

            def spanned(wn):  # get_spanning_leaves: the leaves below a node
                return {wn} if not nodes[wn] else set().union(*(spanned(k) for k in nodes[wn]))
            # internal nodes in wn_id order, each its leaves in wn_id order, kept if 5..392 of them
            self.nodes = [[rel[leaf] for leaf in sorted(spanned(wn))] for wn in sorted(nodes) if nodes[wn]]
            self.nodes = [span for span in self.nodes if MIN_WAYS <= len(span) <= MAX_SPANNING_LEAVES_ELIGIBLE]

    def class_ids(self, rng) -> np.ndarray:
        if self.kind == "HierarchicalDatasetSpecification":
            rng.choice([True, False], p=[1.0, 0.0])  # use the hierarchy with probability 1 - 0
            eligible = np.empty(len(self.nodes), dtype=object)  # rng.choice over the list of lists
            eligible[:] = self.nodes
            chosen = rng.choice(eligible)
            if len(chosen) > MAX_WAYS:
                chosen = rng.choice(chosen, size=[MAX_WAYS], replace=False)
            return np.asarray(chosen)
        if self.kind == "BiLevelDatasetSpecification":
            rng.choice([True, False], p=[1.0, 0.0])
            superclass = rng.choice(sorted(self.superclasses), 1)[0]
            offset, n = self.superclasses[superclass]
            ways = rng.randint(low=MIN_WAYS, high=min(MAX_WAYS, n) + 1)
            return offset + rng.choice(n, ways, replace=False)
        ways = rng.randint(low=MIN_WAYS, high=min(MAX_WAYS, len(self.sizes)) + 1)
        return rng.choice(list(range(len(self.sizes))), ways, replace=False)

    def description(self, rng) -> list:
        classes = self.class_ids(rng)
        sizes = self.sizes[classes]
        q = int(min(MAX_QUERY, (sizes // 2).min()))
        remaining = sizes - q
        beta = rng.uniform()
        support = min(np.floor(beta * np.minimum(MAX_CONTRIB, remaining) + 1).sum(), MAX_SUPPORT)
        weights = sizes * np.exp(rng.uniform(MIN_LOG_WEIGHT, MAX_LOG_WEIGHT, size=sizes.shape))
        shots = np.minimum(np.floor(weights / weights.sum() * (support - len(classes))).astype("int32") + 1, remaining)
        return [[int(c) for c in classes], [int(k) for k in shots], q]


def make(episodes: int = 100, seed: int = 0, sources=SOURCES) -> dict:
    out = {"made_by": f"python -m metadataset.golden OUT.json --episodes {episodes} --seed {seed}",
           "official": {"repository": "google-research/meta-dataset", "commit": OFFICIAL_COMMIT,
                        "file": "meta_dataset/data/sampling.py"},
           "seed": seed, "episode": "[relative class ids, support shots per class, query shots per class]",
           "sources": {}}
    for name in sources:
        raw = json.loads((OFFICIAL_DIR / f"{name}_dataset_spec.json").read_text())
        state = description_seed(seed, name)
        rng, sampler = np.random.RandomState(state), OfficialSampler(raw)
        out["sources"][name] = {"spec": f"metadataset/official/{name}_dataset_spec.json", "rng_state": state,
                                "episodes": [sampler.description(rng) for _ in range(episodes)]}
    return out


def dump(golden: dict) -> str:
    """JSON with one episode per line (diffable, and a tenth the size of indent=2)."""
    text = json.dumps({**golden, "sources": {}}, indent=1)[:-len('{}\n}')]
    parts = []
    for name, entry in golden["sources"].items():
        eps = ",\n   ".join(json.dumps(e, separators=(",", ":")) for e in entry["episodes"])
        head = json.dumps({k: v for k, v in entry.items() if k != "episodes"})[:-1]
        parts.append(f'  "{name}": {head}, "episodes": [\n   {eps}]}}')
    return text + "{\n" + ",\n".join(parts) + "\n }\n}\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m metadataset.golden", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    golden = make(a.episodes, a.seed)
    Path(a.out).write_text(dump(golden))
    assert json.loads(Path(a.out).read_text()) == json.loads(json.dumps(golden))
    print(f"{a.out}: {a.episodes} episodes of {', '.join(golden['sources'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
