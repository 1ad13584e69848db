"""Meta-Dataset transfer of frozen features (docs/design.md §5), without TensorFlow.

- records, spec, tfrecord, example: read the official converted sources (dataset_spec.json
  plus one TFRecord file of tf.train.Example {image, label} per class), CRCs checked.
- convert: write that format from an ImageFolder tree; mini: the offline smoke sources.
- episodes: Meta-Dataset's variable-way variable-shot episode sampler (ICLR 2020, Sec. 3.2).
- features, heads, protocols: frozen features computed once per image; protocol A (the Ring
  paper's per-source linear probe) and protocol B (the official 600-episode evaluation with
  prototype and logistic-regression heads, mean and 95% confidence interval).

Entry points: python -m metadataset {linear,episodic,convert,build-mini} (see __main__).
"""
