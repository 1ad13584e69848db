"""Meta-Dataset transfer of frozen features (docs/design.md §5), without TensorFlow.

- records, spec, tfrecord, example: read the official converted sources (dataset_spec.json
  plus one TFRecord file of tf.train.Example {image, label} per class), CRCs checked.
- convert: write that format from an ImageFolder tree; mini: the offline smoke sources.
- episodes: Meta-Dataset's variable-way variable-shot episode sampler (ICLR 2020, Sec. 3.2),
  its descriptions draw for draw the official sampler's; golden: the transcription of the
  official sampler that writes the golden episodes the tests compare them with.
- features, heads, protocols: frozen features computed once per image (for episodes: only the
  images they draw), under ringbench's or Meta-Dataset's preprocessing; protocol A (the Ring
  paper's per-source linear probe) and protocol B (the official 600-episode evaluation with
  prototype and logistic-regression heads, mean and 95% confidence interval).
- contamination: which rows a backbone's pretraining data has already seen.

Entry points: python -m metadataset {linear,episodic,convert,build-mini} (see __main__).
"""
