"""Known answers for the Meta-Dataset episode sampler where mutation testing found the suite
blind (docs/mutation.md)."""
import numpy as np
import pytest

from metadataset.episodes import (
    Episode,
    EpisodeConfig,
    Sampler,
    compute_num_query,
    drawn_images,
    pick_images,
    sample_num_support_per_class,
    split_sampler,
)
from metadataset.errors import MetaDatasetError
from metadataset.spec import Spec


def test_drawn_images_are_each_classes_sorted_distinct_images_over_all_episodes():
    first = Episode(np.array([3, 1]), np.array([1, 1]), 1, (np.array([5, 2]), np.array([4, 0])))
    second = Episode(np.array([1]), np.array([1]), 1, (np.array([7, 4]),))
    got = drawn_images([first, second])
    assert list(got) == [1, 3]  # classes in order
    assert got[1].tolist() == [0, 4, 7] and got[3].tolist() == [2, 5]
    assert drawn_images([]) == {}


def spec(superclasses=None, dag=None):
    """10 classes: 2 train, 2 valid, 6 test (ids 4..9), class i with 10 + i images."""
    return Spec("toy", "DatasetSpecification", {"TRAIN": 2, "VALID": 2, "TEST": 6}, {i: 10 + i for i in range(10)},
                {i: str(i) for i in range(10)}, superclasses=superclasses or {}, dag=dag or {})


def test_split_sampler_takes_the_splits_classes_relative_to_the_split():
    s = split_sampler(spec(), source="toy")
    assert s.sizes.tolist() == [14, 15, 16, 17, 18, 19] and s.source == "toy"
    assert s.superclasses is None and s.dag is None and s.config == EpisodeConfig()
    valid = split_sampler(spec(), EpisodeConfig(min_ways=2), split="VALID")
    assert valid.sizes.tolist() == [12, 13] and valid.config.min_ways == 2 and valid.source == "source"
    # bi-level: the test split's superclasses as split-relative class indices
    bilevel = spec(superclasses={"TEST": [range(4, 7), range(7, 10)]})
    s = split_sampler(bilevel, EpisodeConfig(min_ways=3))
    assert [c.tolist() for c in s.superclasses] == [[0, 1, 2], [3, 4, 5]]
    # hierarchical: the split's DAG (already split-relative in the spec)
    s = split_sampler(spec(dag={"TEST": [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]], "TRAIN": [[0, 1]]}))
    assert [c.tolist() for c in s.dag] == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]


def test_an_episode_config_describes_every_setting():
    import math
    d = EpisodeConfig(num_ways=5, num_query=3).describe()
    assert d == {"num_ways": 5, "num_support": None, "num_query": 3, "min_ways": 5, "max_ways_upper_bound": 50,
                 "max_num_query": 10, "max_support_set_size": 500, "max_support_size_contrib_per_class": 100,
                 "min_log_weight": math.log(0.5), "max_log_weight": math.log(2.0)}


# ---------------------------------------------------------------- the draws, by hand

def first_distinct(values, m):
    out = []
    for v in values:
        if v not in out:
            out.append(int(v))
    return out[:m]


def test_pick_images_is_a_permutation_from_half_the_class_and_first_distinct_draws_below():
    # m at least half of n: the first m of a permutation
    assert pick_images(10, 5, np.random.RandomState(0)).tolist() == np.random.RandomState(0).permutation(10)[:5].tolist()
    # below: the first m distinct values of 2m uniform draws over range(n)
    rs = np.random.RandomState(3)
    want = first_distinct(rs.randint(0, 12, size=10), 5)
    got = pick_images(12, 5, np.random.RandomState(3))
    assert len(want) == 5 and got.tolist() == want and got.dtype == np.int64
    # seed 51: the first 10 draws over range(11) hold 4 distinct values (9, 5, 0, 4): another 2 x (5 - 4) draws
    rs = np.random.RandomState(51)
    first = rs.randint(0, 11, size=10)
    assert first_distinct(first, 5) == [9, 5, 0, 4]
    want = first_distinct(list(first) + list(rs.randint(0, 11, size=2)), 5)
    assert pick_images(11, 5, np.random.RandomState(51)).tolist() == want


def test_query_and_support_shots_by_hand():
    sizes = np.array([7, 12, 30])
    assert compute_num_query(sizes, 10, None) == 3  # min(10, min(7 // 2, 6, 15))
    assert compute_num_query(np.array([40, 50]), 10, None) == 10
    assert compute_num_query(sizes, 10, 3) == 4 and compute_num_query(np.array([40, 50]), 10, 3) == 10
    rng = np.random.RandomState(7)
    remaining = sizes - 3
    got = sample_num_support_per_class(sizes, remaining, 20, np.log(0.5), np.log(2.0), rng)
    rs = np.random.RandomState(7)
    weights = sizes * np.exp(rs.uniform(np.log(0.5), np.log(2.0), size=3))
    want = np.minimum(np.floor(weights / weights.sum() * (20 - 3)).astype(np.int64) + 1, remaining)
    assert got.tolist() == want.tolist() and got.dtype == np.int64


def test_sampler_checks_and_keeps_what_it_can_sample():
    s = Sampler([5] * 6)
    assert s.source == "source" and s.sizes.dtype == np.int64
    # DAG nodes spanning from min_ways to 392 leaves can be drawn, others not
    spans = [list(range(4)), list(range(5)), list(range(392)), list(range(393))]
    s = Sampler([5] * 400, dag=spans)
    assert [len(d) for d in s.dag] == [5, 392]
    # fixed ways: from 2 to the number of classes
    assert Sampler([5] * 6, EpisodeConfig(num_ways=2)).config.num_ways == 2
    assert Sampler([5] * 6, EpisodeConfig(num_ways=6)).config.num_ways == 6
    for ways in (1, 7):
        with pytest.raises(MetaDatasetError, match=f"{ways}-way episodes need between 2 and 6"):
            Sampler([5] * 6, EpisodeConfig(num_ways=ways))
    # superclasses of min_ways classes are enough; fewer are refused
    assert Sampler([5] * 10, superclasses=[range(5), range(5, 10)]).superclasses is not None
    with pytest.raises(MetaDatasetError, match="a test superclass has 4 classes"):
        Sampler([5] * 9, superclasses=[range(5), range(5, 9)])
    # a fixed support shot k needs k + 1 images per class (one query)
    assert Sampler([4] * 6, EpisodeConfig(num_support=3)).sizes.min() == 4
    with pytest.raises(MetaDatasetError, match="class 0 of the split has 3 images; episodes need at least 4"):
        Sampler([3] + [9] * 5, EpisodeConfig(num_support=3))
    with pytest.raises(MetaDatasetError, match="episodes need at least 2"):
        Sampler([1] + [9] * 5)


def test_fixed_shots_need_support_and_query_images_in_every_class():
    s = Sampler([8, 8, 8, 8, 8], EpisodeConfig(num_ways=5, num_support=3, num_query=5))
    classes, shots, q = s.sample_description(np.random.RandomState(0))
    assert shots.tolist() == [3] * 5 and q == 5  # 3 + 5 = 8: exactly enough
    assert s.sample(np.random.RandomState(0), np.random.RandomState(1)).shots.dtype == np.int64
    with pytest.raises(MetaDatasetError, match="some classes have fewer than 3 \\+ 6 images"):
        Sampler([8] * 5, EpisodeConfig(num_ways=5, num_support=3, num_query=6)).sample_description(np.random.RandomState(0))
    # a fixed support shot without a fixed query shot: q = min(10, smallest class - k)
    classes, shots, q = Sampler([8, 9, 12, 20, 30], EpisodeConfig(num_support=3)).sample_description(
        np.random.RandomState(0))
    assert q == min(10, int(np.array([8, 9, 12, 20, 30])[classes].min()) - 3)


def test_a_dag_node_of_exactly_fifty_leaves_is_an_episode_of_all_of_them_in_order():
    node = list(range(10, 60))
    s = Sampler([5] * 60, dag=[node])
    assert s.sample_classes(np.random.RandomState(0)).tolist() == node
    wide = Sampler([5] * 60, dag=[list(range(60))]).sample_classes(np.random.RandomState(0))
    assert len(wide) == 50 and len(set(wide.tolist())) == 50  # more leaves: 50 of them, distinct


def test_superclass_episodes_draw_distinct_classes():
    s = Sampler([5] * 10, superclasses=[range(5), range(5, 10)])
    for seed in range(20):
        classes = s.sample_classes(np.random.RandomState(seed))
        assert len(set(classes.tolist())) == len(classes) >= 5
        assert set(classes.tolist()) <= set(range(5)) or set(classes.tolist()) <= set(range(5, 10))


def test_the_image_stream_of_a_seed_and_source_is_what_published_numbers_drew():
    """Pinned values: a change of the image generator's words or of the draws pick_images
    consumes would silently change every episode's images for a seed."""
    from metadataset.episodes import image_rng_for
    assert image_rng_for(0, "dtd").randint(1 << 30, size=3).tolist() == [913533217, 534895866, 461247310]
    rng = np.random.RandomState(0)
    assert pick_images(1000, 5, rng).tolist() == [684, 559, 629, 192, 835] and rng.randint(1000) == 277
    rng = np.random.RandomState(51)  # its first 10 draws of range(11) hold 4 distinct values: a second round
    assert pick_images(11, 5, rng).tolist() == [9, 5, 0, 4, 10] and rng.randint(1000) == 572
