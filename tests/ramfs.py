"""TF's in-memory `ram://` file system behind etils.epath, for tests of remote paths.

etils 1.15 routes gs://, s3://, az:// and hf:// to TF's gfile when TensorFlow is
installed, but has no entry for ram://. `use_ram(monkeypatch)` adds one on that same
gfile backend, so a test on ram:// runs the code path a gs:// run takes (seqio and
tf.data read ram:// natively), while anything that bypasses the file layer (open(),
os.*) fails or writes a local `ram:` folder, which the test can look for.
"""

import uuid

from etils.epath import backend, gpath, register


def use_ram(monkeypatch) -> str:
  """Registers ram:// for this test; returns a fresh root directory on it."""
  monkeypatch.setattr(gpath, "_URI_PREFIXES", gpath._URI_PREFIXES + ("ram://",))
  monkeypatch.setattr(gpath, "_URI_SCHEMES", gpath._URI_SCHEMES | {"ram"})
  monkeypatch.setitem(gpath._URI_MAP_ROOT, "ram://", "/ram/")
  monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "ram", backend.tf_backend)
  monkeypatch.setitem(register._URI_PREFIXES_TO_CLS, "ram://", gpath.PosixGPath)
  return f"ram://t{uuid.uuid4().hex[:10]}"
