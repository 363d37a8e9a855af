"""Which device each model copy runs on: GPUs or TPUs when present, spread across a worker's processes.

A worker may run several SDK processes (Dataflow runs one per core unless told otherwise) and have
several GPUs. Each model copy claims a device through lock files that every process on the machine
sees: the first free device, or, once all are taken, the next in round-robin order. A claim lasts
as long as its process (the kernel drops the lock when the process dies), so a restarted process
can take its device back.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import tempfile
import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa

from models import quiet
from pipelines.choices import Accelerator
from schemas import InputSchema

AUTO, CPU, GPU, TPU = (accelerator.value for accelerator in Accelerator)
ACCELERATORS = (AUTO, CPU, GPU, TPU)
CLAIMS_DIR_ENV = "SCORING_DEVICE_CLAIMS_DIR"

_claims: list[int] = []  # open lock files: this process's device claims, held for its lifetime
_claims_lock = threading.Lock()


class AcceleratorError(RuntimeError):
    """The requested accelerator is not available here; the message says what is missing."""


def resolve_kind(accelerator: str) -> str:
    """`auto` -> gpu where TensorFlow sees one, else cpu; other values are checked, not guessed."""
    tf = quiet.tensorflow()

    if accelerator not in ACCELERATORS:
        raise AcceleratorError(f"--accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    if accelerator == AUTO:
        return GPU if tf.config.list_physical_devices("GPU") else CPU
    return accelerator


def visible_devices(kind: str) -> list[str]:
    """Logical device names of `kind` in this process, preparing them for use."""
    tf = quiet.tensorflow()

    if kind == GPU:
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            raise AcceleratorError(
                "--accelerator gpu: TensorFlow sees no GPU on this worker (no GPU attached, or no NVIDIA "
                f"driver / CUDA libraries for tensorflow {tf.__version__}; install tensorflow[and-cuda]). On "
                "Dataflow add --dataflow_service_options=worker_accelerator=type:<gpu>;count:<n>;"
                "install-nvidia-driver, or use --accelerator auto to fall back to CPUs"
            )
        for gpu in gpus:
            try:  # several processes share each GPU's memory: take it as needed, not all up front
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass  # already initialised in this process; growth was set then or cannot change now
        return [d.name for d in tf.config.list_logical_devices("GPU")]
    if kind == TPU:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise AcceleratorError(
                f"--accelerator tpu: no TPU found on this worker ({type(e).__name__}: {e}); it needs a TPU VM "
                "with libtpu and a TensorFlow build with TPU support (tensorflow-tpu), or use --accelerator auto"
            ) from e
        return [d.name for d in tf.config.list_logical_devices("TPU")]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def claim_device(kind: str, devices: list[str]) -> str:
    """Claim one of `devices` for a model copy, machine-wide: first free, else round robin."""
    directory = os.environ.get(CLAIMS_DIR_ENV) or os.path.join(
        tempfile.gettempdir(), f"batch-scoring-devices-{os.getuid()}"
    )
    os.makedirs(directory, exist_ok=True)
    with _claims_lock:
        for index, device in enumerate(devices):
            fd = os.open(os.path.join(directory, f"{kind}-{index}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _claims.append(fd)
            return device
        # Every device has a copy already: share them out in turn, counted machine-wide.
        counter = os.path.join(directory, f"{kind}-overflow.count")
        fd = os.open(counter, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            turn = int(os.read(fd, 32) or b"0")
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, str(turn + 1).encode())
        finally:
            os.close(fd)
        return devices[turn % len(devices)]


class ShardedModel:
    """Copies of one exported model, each placed on its own claimed device; calls go round robin.

    This is the object RunInference shares between a process's threads (or, for large models,
    between processes), so it takes and returns Arrow and NumPy, which also cross process borders.
    """

    def __init__(self, path: str, schema: InputSchema, accelerator: str, copies: int):
        tf = quiet.tensorflow()

        kind = resolve_kind(accelerator)
        devices = visible_devices(kind)
        if not devices:
            raise AcceleratorError(f"--accelerator {accelerator}: no {kind.upper()} devices visible")
        self.kind = kind
        self._schema = schema
        self._host = socket.gethostname()
        self.copies: list[tuple[str, Any]] = []
        for _ in range(min(copies, len(devices))):
            device = claim_device(kind, devices)
            if any(d == device for d, _ in self.copies):
                break  # every device already holds one of this process's copies
            with tf.device(device):
                loaded = tf.saved_model.load(path)
            self.copies.append((device, loaded))
        self._turn = itertools.count()

    @property
    def devices(self) -> list[str]:
        return [d for d, _ in self.copies]

    def predict(self, batch: pa.RecordBatch | pa.Table) -> tuple[np.ndarray, str]:
        """Probabilities for the batch's records, and the device (host-qualified) that computed them."""
        probabilities, device, _ = self.predict_timed(batch)
        return probabilities, device

    def predict_timed(self, batch: pa.RecordBatch | pa.Table) -> tuple[np.ndarray, str, tuple[float, float]]:
        """As `predict`, with the seconds spent making the input tensors and in the model. Returned, not
        counted here: a large model's copy runs in another process, out of reach of Beam's metrics."""
        import tensorflow as tf

        from models import signature

        device, loaded = self.copies[next(self._turn) % len(self.copies)]
        with tf.device(device):
            t0 = time.perf_counter()
            inputs = signature.batch_to_inputs(batch, self._schema)
            t1 = time.perf_counter()
            out = loaded.signatures[signature.RAW_SIGNATURE](**inputs)[signature.PROBABILITY].numpy()
        return out, f"{self._host}{device}", (t1 - t0, time.perf_counter() - t1)
