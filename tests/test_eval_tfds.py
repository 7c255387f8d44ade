"""The optional TFDS path: our example->record mappings on the builders' real features
(tfds.testing.mock_data generates examples from each builder's feature spec)."""

import pytest

from sbp_jax.eval.tfds_source import load_tfds


@pytest.mark.slow  # imports TensorFlow (~10-20 s)
def test_tfds_builders_map_to_valid_records():
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  with tfds.testing.mock_data(num_examples=3):
    arc = load_tfds("ai2_arc/ARC-Easy", "test", "multiple_choice")
    tqa = load_tfds("trivia_qa/unfiltered.nocontext", "validation", "generative_qa", limit=2)
    lam = load_tfds("lambada", "test", "lambada")
  assert len(arc) == 3 and len(tqa) == 2 and len(lam) == 3
  assert all(0 <= r["answer"] < len(r["choices"]) for r in arc)
  assert all(isinstance(a, str) for r in tqa for a in r["answers"])

  def winogrande(self, *args, **kwargs):
    rows = [("The jar fell off the shelf because _ was slippery.", "the jar", "the shelf", 1),
            ("Pat called Lee since _ needed help.", "Pat", "Lee", 0)]
    return tf.data.Dataset.from_generator(
        lambda: ({"sentence": s, "option1": a, "option2": b, "label": np.int64(l)}
                 for s, a, b, l in rows),
        output_types=self.info.features.dtype, output_shapes=self.info.features.shape)

  with tfds.testing.mock_data(as_dataset_fn=winogrande):
    wg = load_tfds("winogrande", "validation", "winogrande")
  assert [(r["options"], r["answer"]) for r in wg] == [(["the jar", "the shelf"], 1),
                                                      (["Pat", "Lee"], 0)]
  with pytest.raises(ValueError, match="gives multiple_choice records but the task's format"):
    load_tfds("ai2_arc/ARC-Easy", "test", "winogrande")
  with pytest.raises(ValueError, match="no mapping for builder 'sciq'"):
    load_tfds("sciq", "test", "multiple_choice")
